// Faults: inject and clear the failure-injection API's faults (POST/GET/DELETE /api/faults),
// the active ones with their remaining time, and the consistency checker (POST /api/checks)
// with its report. A route this node does not have yet shows "not available", never made-up data.

import { api, optional } from '../api.js';
import { count, fill, h, nodeChip, notAvailable, toast } from '../ui.js';

let el;
let active;
let checks;
let timer;
let faultsAvailable = true;
let checksAvailable = true;
let lastFaults = [];
let fetchedAt = 0;

const KINDS = {
  partition: 'Cut the links between the chosen nodes and the others, both ways.',
  crash: 'Kill the chosen nodes\' Redis now; it starts again when the time is up.',
  pause: 'Freeze the chosen nodes\' Redis (SIGSTOP) until the time is up.',
  latency: 'Add latency (ms, with jitter) on links from or to the chosen nodes.',
  loss: 'Drop a percentage of the messages from or to the chosen nodes.',
  skew: 'Shift the chosen nodes\' clocks by ms (signed).',
  cut: 'One-way: what the chosen nodes send to the others is lost.',
};

let forbidden = false;
let checksForbidden = false;

async function refresh() {
  forbidden = false;
  const f = await optional('/api/faults').catch((e) => {
    if (e.status === 403) forbidden = true;
    else toast(`faults: ${e.message}`, 'error');
    return { faults: lastFaults };
  });
  faultsAvailable = f !== null;
  lastFaults = f?.faults || [];
  fetchedAt = Date.now();
  checksForbidden = false;
  const c = await optional('/api/checks').catch((e) => {
    if (e.status === 403) checksForbidden = true;
    else toast(`checks: ${e.message}`, 'error');
    return { checks: [] };
  });
  checksAvailable = c !== null;
  renderActive();
  renderChecks(c);
  for (const b of document.querySelectorAll('#fault-inject')) b.disabled = !faultsAvailable;
  for (const b of document.querySelectorAll('#check-run')) b.disabled = !checksAvailable;
}

/** A fault's reach in words and node chips: a partition as its groups split apart. */
function describe(f) {
  const chips = (ids) => (ids || []).map(nodeChip);
  if (f.groups) return f.groups.map((g, i) => [i ? h('b.cutmark', ' ⟂ ') : '', chips(g)]);
  if (f.from) return [chips(f.from), ' → ', chips(f.to), ' lost'];
  const extra = f.kind === 'latency' ? ` +${f.ms} ms ±${f.jitter_ms || 0}` : f.kind === 'loss' ? ` ${f.percent}% lost` : f.kind === 'skew' ? ` clock ${f.ms > 0 ? '+' : ''}${f.ms} ms` : f.process ? ` (${f.process})` : '';
  return [chips(f.targets || f.nodes), extra];
}

function remaining(f) {
  const left = (f.expires_in_ms ?? 0) - (Date.now() - fetchedAt);
  return Math.max(0, Math.round(left / 1000));
}

function renderActive() {
  if (!faultsAvailable) return fill(active, notAvailable('Fault injection (/api/faults)'));
  if (forbidden) return fill(active, h('p.note#faults-forbidden', 'The faults in force are shown to admin keys only (this key is read-only).'));
  fill(active,
    h('h3', 'Active faults ', h('button.danger.admin-only#faults-reset', { disabled: !lastFaults.length, on: { click: async () => { await api('DELETE', '/api/faults').catch((e) => toast(e.message, 'error')); refresh(); } } }, 'Clear all')),
    lastFaults.length ? h('div.chips#faults-active', lastFaults.map((f) => h('span.chip.fault', { 'data-kind': f.kind, 'data-id': f.id },
      h('b', f.kind), ' ', describe(f),
      h('span.countdown', ` ${remaining(f)} s left`),
      h('button.link.admin-only', { title: 'Heal now', on: { click: async () => { await api('DELETE', `/api/faults/${encodeURIComponent(f.id)}`).catch((e) => toast(e.message, 'error')); refresh(); } } }, 'Heal')))) : h('p.zero#faults-none', 'No fault is active.'));
}

const CHECK_CLASS = { passed: 'ok', running: 'warn', failed: 'bad', error: 'bad' };

function checkProgress(c) {
  const p = c.progress;
  if (!p) return '—';
  const of = p.seconds || c.seconds || 0;
  return h('div.check-progress',
    h('div.progress-row', h('progress', { max: of || 1, value: Math.min(p.elapsed_s || 0, of || 1) }), h('span', `${p.phase || ''} ${p.elapsed_s ?? 0}/${of} s`)),
    h('span.small', `${p.acknowledged ?? 0}/${p.attempted ?? 0} acknowledged · ${p.failed ?? 0} failed · ${p.faults_injected ?? 0} faults`));
}

/** A finished check's report in words: lost writes, stale reads, unavailability per fault window. */
export function checkReport(r) {
  const judged = r.stale_judged !== false;
  const ops = r.operations || {};
  const refused = Object.entries(r.faults_refused || {});
  const list = (rows, draw) => (rows.length > 10 ? [...rows.slice(0, 10).map(draw), h('li.small', `… and ${rows.length - 10} more`)] : rows.map(draw));
  return h('div.check-report',
    h(`p.verdict.${r.passed ? 'ok' : 'bad'}`, r.passed ? 'PASSED: nothing acknowledged was lost and no read was stale.' : 'FAILED: see below.'),
    h('p.small', `${r.setup?.schedule || ''} for ${r.setup?.seconds ?? '?'} s, seed ${r.setup?.seed ?? '?'}, quorum N${r.setup?.n}/W${r.setup?.w}/R${r.setup?.r}, workloads ${(r.setup?.workloads || []).join(', ')} · ${ops.acknowledged ?? 0}/${ops.attempted ?? 0} operations acknowledged · ${r.faults_injected ?? 0} faults injected${refused.length ? ` (${refused.map(([k, n]) => `${n} refused: ${k}`).join(', ')})` : ''}`),
    h('h4', 'Lost writes ', h(`span.count${r.lost?.length ? '.bad' : '.zero'}.check-lost`, String(r.lost?.length || 0))),
    r.lost?.length ? h('ul.small', list(r.lost, (l) => h('li', `${l.workload} ${l.key}: acknowledged ${l.expected}, read ${l.got ?? 'nothing'} through ${l.node}`))) : null,
    h('h4', 'Stale reads ', judged ? h(`span.count${r.stale_reads?.length ? '.bad' : '.zero'}.check-stale`, String(r.stale_reads?.length || 0)) : h('span.small.check-stale', 'not judged (R + W ≤ N: a read need not see the last write)')),
    r.stale_reads?.length ? h('ul.small', list(r.stale_reads, (x) => h('li', `${x.key} at ${x.at_s.toFixed(2)} s through ${x.node}: got ${x.got ?? 'nothing'}, expected at least ${x.expected_at_least}`))) : null,
    r.not_converged?.length ? [h('h4', `Replicas not converged: ${r.not_converged.length}`), h('ul.small', list(r.not_converged, (d) => h('li', `${d.key}: ${Object.entries(d.replicas).map(([n, v]) => `${n}=${v}`).join(' ')}`)))] : null,
    r.unverified?.length ? h('p.small', `${r.unverified.length} acknowledged writes could not be read back after healing.`) : null,
    h('h4', 'Unavailability per fault window'),
    r.unavailability?.length ? h('table.grid.check-windows', h('thead', h('tr', ['fault', 'kind', 'window', 'seconds without a success'].map((c) => h('th', c)))),
      h('tbody', r.unavailability.map((w) => h('tr', h('td', w.id), h('td', w.kind), h('td', `${w.from_s.toFixed(1)}–${w.to_s.toFixed(1)} s`), h('td', count(w.seconds_without_success, 'bad')))))) : h('p.zero.check-windows', 'No fault window.'),
    h('details', h('summary', 'the report as JSON'), h('pre', JSON.stringify(r, null, 2))));
}

/** Reports the user opened or closed (the newest is open unless closed), kept across redraws. */
const opened = new Set();
const closed = new Set();
function remember(id, open) {
  (open ? opened : closed).add(id);
  (open ? closed : opened).delete(id);
}

function renderChecks(list) {
  if (!checksAvailable) return fill(checks, notAvailable('Consistency checker (/api/checks)'));
  if (checksForbidden) return fill(checks, h('p.note', 'The checker runs are shown to admin keys only (this key is read-only).'));
  const items = [...(list?.checks || [])].reverse().slice(0, 5);
  fill(checks, items.length ? items.map((c) => h('div.check', { 'data-check': c.id, 'data-state': c.state },
    h('p', h('b', c.id), ' ', h(`span.badge.${CHECK_CLASS[c.state] || 'idle'}`, c.state), ` ${c.schedule} · ${c.seconds} s · seed ${c.seed}`, c.history ? h('span.small', ` · history ${c.history}`) : ''),
    c.state === 'running' ? checkProgress(c) : null,
    c.error ? h('p.bad', c.error) : null,
    c.report ? h('details', { open: opened.has(c.id) || (c === items[0] && !closed.has(c.id)) }, h('summary', { on: { click: (e) => remember(c.id, !e.target.parentElement.open) } }, 'report'), checkReport(c.report)) : null)) : h('p.zero', 'No check has run on this node yet.'));
}

export default {
  id: 'faults',
  title: 'Faults',
  mount(root, s) {
    el = root;
    active = h('div#faults');
    checks = h('div#checks');
    const kind = h('select#fault-kind', Object.keys(KINDS).map((k) => h('option', { value: k }, k)));
    const help = h('p.note', KINDS.partition);
    const amountLabel = h('label', 'amount ');
    const showAmount = () => {
      help.textContent = KINDS[kind.value];
      amountLabel.style.display = ['latency', 'loss', 'skew'].includes(kind.value) ? '' : 'none';
      amountLabel.firstChild.textContent = kind.value === 'loss' ? 'percent ' : 'ms ';
    };
    kind.addEventListener('change', showAmount);
    const targets = h('span.targets', (s.nodes || []).map((n) => h('label', h('input', { type: 'checkbox', value: n.id, name: 'fault-target' }), nodeChip(n.id))));
    const ttl = h('input#fault-ttl', { type: 'number', min: 1, value: 30, title: 'seconds' });
    const amount = h('input#fault-amount', { type: 'number', value: 100, title: 'ms for latency and skew, percent for loss' });
    const form = h('form.toolbar#fault-form', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          const chosen = [...targets.querySelectorAll('input:checked')].map((i) => i.value);
          if (!chosen.length) return toast('choose at least one node', 'error');
          const others = (lastStore.nodes || []).map((n) => n.id).filter((id) => !chosen.includes(id));
          const body = { kind: kind.value, ttl_ms: +ttl.value * 1000 };
          if (kind.value === 'partition') body.groups = [chosen, others];
          else if (kind.value === 'cut') { body.from = chosen; body.to = others; }
          else body.targets = chosen;
          if (kind.value === 'latency') { body.ms = +amount.value; body.jitter_ms = 0; }
          if (kind.value === 'loss') body.percent = +amount.value;
          if (kind.value === 'skew') body.ms = +amount.value;
          try { const f = await api('POST', '/api/faults', body); toast(`injected ${f.kind} ${f.id}`); } catch (err) { toast(`inject: ${err.message}`, 'error'); }
          refresh();
        },
      },
    }, kind, targets, h('label', 'for ', ttl, ' s'), amountLabel, h('button.admin-only#fault-inject', { type: 'submit' }, 'Inject'));
    amountLabel.append(amount);
    showAmount();
    const schedule = h('select#check-schedule', ['mixed', 'partition-halves', 'kill-leader', 'pause-one', 'skew', 'random', 'none'].map((v) => h('option', v)));
    const seconds = h('input#check-seconds', { type: 'number', min: 1, value: 30, title: 'seconds of workload and faults (healing and judging come after)' });
    const run = h('form.toolbar', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          try { const c = await api('POST', '/api/checks', { schedule: schedule.value, seconds: +seconds.value }); toast(`check ${c.id} started`); } catch (err) { toast(`check refused: ${err.message}`, 'error'); }
          refresh();
        },
      },
    }, schedule, h('label', 'for ', seconds, ' s'), h('button.admin-only#check-run', { type: 'submit' }, 'Run the checker'));
    fill(el,
      h('section.card', h('h3', 'Inject a fault'), form, help),
      h('section.card', active),
      h('section.card', h('h3', 'Consistency checker'), h('p.note', 'Runs workloads while faults happen, then checks the history (linearizable registers, no lost acknowledged writes, intact files).'), run, checks));
    refresh();
    timer = setInterval(refresh, 2000);
  },
  unmount() { clearInterval(timer); },
  update(s) { lastStore = s; if (faultsAvailable && lastFaults.length) renderActive(); },
};

let lastStore = { nodes: [] };
