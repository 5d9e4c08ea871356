// Faults: inject and clear the failure-injection API's faults (POST/GET/DELETE /api/faults),
// the active ones with their remaining time, and the consistency checker (POST /api/checks)
// with its report. A route this node does not have yet shows "not available", never made-up data.

import { api, optional } from '../api.js';
import { fill, h, nodeChip, notAvailable, toast } from '../ui.js';

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
  const c = await optional('/api/checks').catch(() => null);
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

function renderChecks(list) {
  if (!checksAvailable) return fill(checks, notAvailable('Consistency checker (/api/checks)'));
  const items = list?.checks || list?.items || [];
  fill(checks, items.length ? h('table.grid', h('thead', h('tr', ['id', 'state', 'progress', 'report'].map((c) => h('th', c)))),
    h('tbody', items.map((c) => h('tr', { 'data-check': c.id, 'data-state': c.state },
      h('td', c.id), h('td', h(`span.badge.${c.state === 'passed' ? 'ok' : c.state === 'running' ? 'warn' : 'bad'}`, c.state)),
      h('td.small', c.progress ? `${c.progress.phase || ''} ${c.progress.elapsed_s ?? '?'}/${c.seconds ?? c.progress.seconds ?? '?'} s · ${c.progress.acknowledged ?? 0}/${c.progress.attempted ?? 0} acknowledged · ${c.progress.faults_injected ?? 0} faults` : '—', c.error ? h('div.bad', c.error) : ''), h('td.small', c.report ? h('details', h('summary', 'report'), h('pre', JSON.stringify(c.report, null, 2))) : '—'))))) : h('p.zero', 'No check has run yet.'));
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
    const schedule = h('select#check-schedule', ['mixed', 'partition-halves', 'kill-leader', 'pause-one', 'skew', 'random'].map((v) => h('option', v)));
    const seconds = h('input#check-seconds', { type: 'number', min: 5, value: 30 });
    const run = h('form.toolbar', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          try { const c = await api('POST', '/api/checks', { schedule: schedule.value, seconds: +seconds.value }); toast(`check ${c.id} started`); } catch (err) { toast(`check: ${err.message}`, 'error'); }
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
