// Scenarios: the five guided scenarios of /api/demos, each started with one click (short mode or
// not), the running one's steps narrated live (its "demo" events on the WebSocket, and
// GET /api/demos/{id}), Stop, and the verdict when it ends (trade-offs' table drawn as a chart).

import { select } from 'd3-selection';
import { api, optional } from '../api.js';
import { fill, fmtBytes, h, notAvailable, svgRoot, toast } from '../ui.js';

export const SCENARIOS = [
  ['normal', 'Writes, reads and a file through different nodes, each traced; a replica made stale on purpose and repaired by a read.'],
  ['node-failure', 'The Raft leader killed under load: how fast it is seen down, the new leader, the hints stored and replayed, nothing lost.'],
  ['scaling', 'A fourth node joins under load and leaves again: the share of the data it takes, latency while data moves, nothing lost.'],
  ['resources', 'Memory, CPU and clients per node at rest and under load; one node filled until it refuses writes, then freed.'],
  ['trade-offs', 'The same workload at W/R 1/1, 2/2, 3/1 and 1/3: throughput, latency, stale reads; a file at two chunk sizes.'],
];

const STATE_CLASS = { running: 'warn', passed: 'ok', failed: 'bad', stopped: 'idle', error: 'bad' };

let el;
let panel;
let timer;
let available = true;
let runs = [];
let shown = null; // the run drawn in the panel (the running one, or the last one started here)
let refused = '';
let lastSig = '';
let store = { events: [] };

/** The narration of a run: the lines GET /api/demos/{id} returned, then the newer lines the
 * WebSocket brought ("demo" events of that run the poll has not returned yet). */
export function narrationOf(run, events) {
  const lines = (run?.narration || []).map((l) => ({ text: l.text, at_ms: l.at_ms }));
  const known = new Map();
  for (const l of lines) known.set(l.text, (known.get(l.text) || 0) + 1);
  for (const e of events) {
    if (e.type !== 'demo' || e.id !== run?.id) continue;
    const left = known.get(e.text) || 0;
    if (left) known.set(e.text, left - 1);
    else lines.push({ text: e.text, at_ms: null, live: true });
  }
  return lines;
}

/** Runs seen only on the event stream (started elsewhere: another node, or `rcluster demo`). */
export function elsewhere(events, localIds) {
  const out = new Map();
  for (const e of events) {
    if (e.type !== 'demo' || localIds.has(e.id)) continue;
    const r = out.get(e.id) || { id: e.id, name: e.name, lines: [] };
    r.lines.push(e.text);
    r.step = e.step;
    out.set(e.id, r);
  }
  return [...out.values()];
}

const running = () => runs.find((r) => r.state === 'running');

async function refresh() {
  const list = await optional('/api/demos').catch((e) => { toast(`scenarios: ${e.message}`, 'error'); return { demos: runs }; });
  available = list !== null;
  runs = list?.demos || [];
  const now = running();
  if (now) shown = now.id;
  else if (!shown && runs.length) shown = runs[runs.length - 1].id;
  if (shown && runs.find((r) => r.id === shown)?.state === 'running') {
    const one = await api('GET', `/api/demos/${encodeURIComponent(shown)}`).catch(() => null);
    if (one) runs = runs.map((r) => (r.id === one.id ? one : r));
  }
  render();
}

async function start(name, short) {
  refused = '';
  try {
    const r = await api('POST', '/api/demos', { name, short });
    shown = r.id;
    toast(`scenario ${name} started (${r.id})`);
  } catch (e) {
    refused = e.status === 409 ? e.message : `${e.status ? `HTTP ${e.status}: ` : ''}${e.message}`;
  }
  await refresh();
}

async function stop(id) {
  try { await api('DELETE', `/api/demos/${encodeURIComponent(id)}`); toast(`stopping ${id}: it puts back what it changed`); } catch (e) { toast(`stop: ${e.message}`, 'error'); }
  await refresh();
}

function chooser() {
  const short = h('input#demo-short', { type: 'checkbox', checked: localStorage.getItem('rc-demo-long') !== '1' });
  short.addEventListener('change', () => localStorage.setItem('rc-demo-long', short.checked ? '0' : '1'));
  const busy = !!running();
  return [
    h('div.toolbar', h('label', { title: 'Fewer keys and shorter loads: a few seconds to a minute each (what the tests run)' }, short, ' short mode')),
    h('table.grid#demo-list', h('tbody', SCENARIOS.map(([name, what]) => h('tr', { 'data-demo': name },
      h('td', h('b', name)),
      h('td.small', what),
      h('td', h('button.admin-only', {
        'data-run': name,
        disabled: busy,
        title: busy ? 'A scenario runs: wait for its verdict or stop it.' : `Run ${name}`,
        on: { click: () => start(name, short.checked) },
      }, 'Run')))))),
    refused ? h('p.verdict.bad#demo-refused', `Refused: ${refused}`) : null,
  ];
}

function figure(v) {
  if (v == null) return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2);
  if (typeof v !== 'object') return String(v);
  const text = JSON.stringify(v);
  return text.length <= 90 ? text : h('details', h('summary', `${text.slice(0, 80)}…`), h('pre', JSON.stringify(v, null, 2)));
}

/** The trade-offs rows as a chart: throughput bars, p50 and p99 latency marks, stale reads. */
export function tradeChart(rows) {
  const W = 640;
  const H = 230;
  const svg = svgRoot(W, H, 'chart trade-chart', 'demo-chart');
  if (!rows?.length) return svg;
  const g = select(svg);
  const left = 50;
  const band = (W - left - 20) / rows.length;
  const top = 24;
  const base = H - 42;
  const maxOps = Math.max(1, ...rows.map((r) => r.ops_per_s || 0));
  const maxMs = Math.max(0.001, ...rows.map((r) => r.p99_ms || 0));
  const yOps = (v) => base - (v / maxOps) * (base - top);
  const yMs = (v) => base - (v / maxMs) * (base - top);
  g.append('text').attr('x', 4).attr('y', 14).attr('class', 'axis')
    .text(`bars: ops/s (max ${Math.round(maxOps)}) · marks: p50 ○ and p99 ● latency (max ${maxMs.toFixed(2)} ms) · stale reads below`);
  g.append('line').attr('x1', left - 6).attr('x2', W - 10).attr('y1', base).attr('y2', base).attr('stroke', '#cbd5e1');
  const col = g.selectAll('g.setting').data(rows).enter().append('g')
    .attr('class', 'setting')
    .attr('data-setting', (r) => r.setting)
    .attr('transform', (_, i) => `translate(${left + i * band},0)`);
  col.append('rect').attr('class', 'ops').attr('x', band * 0.15).attr('width', band * 0.45)
    .attr('y', (r) => yOps(r.ops_per_s || 0)).attr('height', (r) => base - yOps(r.ops_per_s || 0))
    .attr('fill', '#93c5fd')
    .append('title').text((r) => `${r.setting}: ${Math.round(r.ops_per_s)} ops/s, ${r.errors} errors`);
  col.append('text').attr('x', band * 0.375).attr('y', (r) => yOps(r.ops_per_s || 0) - 4).attr('text-anchor', 'middle')
    .text((r) => Math.round(r.ops_per_s || 0));
  col.append('line').attr('x1', band * 0.75).attr('x2', band * 0.75).attr('y1', (r) => yMs(r.p50_ms || 0)).attr('y2', (r) => yMs(r.p99_ms || 0))
    .attr('stroke', '#b45309').attr('stroke-width', 2);
  col.append('circle').attr('cx', band * 0.75).attr('cy', (r) => yMs(r.p50_ms || 0)).attr('r', 4).attr('fill', '#fff').attr('stroke', '#b45309').attr('stroke-width', 2)
    .append('title').text((r) => `p50 ${r.p50_ms.toFixed(2)} ms`);
  col.append('circle').attr('cx', band * 0.75).attr('cy', (r) => yMs(r.p99_ms || 0)).attr('r', 4).attr('fill', '#b45309')
    .append('title').text((r) => `p99 ${r.p99_ms.toFixed(2)} ms`);
  col.append('text').attr('x', band * 0.85).attr('y', (r) => yMs(r.p99_ms || 0) + 4).text((r) => `${r.p99_ms.toFixed(1)} ms`);
  col.append('text').attr('x', band * 0.45).attr('y', base + 15).attr('text-anchor', 'middle').attr('class', 'replica-label').text((r) => r.setting);
  col.append('text').attr('x', band * 0.45).attr('y', base + 31).attr('text-anchor', 'middle')
    .attr('class', (r) => (r.stale_reads ? 'lost' : 'axis'))
    .text((r) => (r.stale_reads == null ? 'stale: not judged' : `stale: ${r.stale_reads}`));
  return svg;
}

function tradeTable(rows) {
  const cols = ['setting', 'ops', 'errors', 'ops/s', 'p50 ms', 'p99 ms', 'cpu %', 'memory', 'stale reads'];
  return h('table.grid#demo-table', h('thead', h('tr', cols.map((c) => h('th', c)))), h('tbody', rows.map((r) => h('tr',
    h('td', r.setting), h('td', r.ops), h('td', r.errors), h('td', Math.round(r.ops_per_s)), h('td', r.p50_ms.toFixed(2)), h('td', r.p99_ms.toFixed(2)),
    h('td', r.cpu_percent.toFixed(1)), h('td', fmtBytes(r.memory_bytes)), h('td', r.stale_reads == null ? '— (R + W ≤ N or no checker)' : r.stale_reads)))));
}

function fileTable(files) {
  const mib = (x) => (x == null ? '—' : `${x.toFixed(1)} MiB/s`);
  return h('table.grid#demo-files', h('thead', h('tr', ['chunk size', 'file', 'chunks', 'upload', 'download', 'intact'].map((c) => h('th', c)))), h('tbody', files.map((f) => h('tr',
    h('td', fmtBytes(f.chunk_size_bytes)), h('td', fmtBytes(f.file_bytes)), h('td', f.chunks), h('td', `${Math.round(f.upload_ms)} ms (${mib(f.upload_mib_per_s)})`),
    h('td', `${Math.round(f.download_ms)} ms (${mib(f.download_mib_per_s)})`), h('td', f.intact ? h('span.ok', 'yes') : h('b.bad', 'NO'))))));
}

function verdict(run) {
  if (run.state === 'running') return null;
  const v = run.verdict;
  const word = run.state === 'passed' ? 'The verdict holds: PASSED.' : run.state === 'failed' ? 'The verdict does not hold: FAILED.' : run.state === 'stopped' ? 'Stopped before its verdict; what it changed was put back.' : `Ended in error: ${run.error || 'see the narration'}.`;
  const drawn = run.name === 'trade-offs' ? ['rows', 'files'] : [];
  const figures = v ? Object.entries(v).filter(([k]) => k !== 'passed' && !drawn.includes(k)) : [];
  return h('div#demo-verdict', { 'data-state': run.state },
    h(`p.verdict.${STATE_CLASS[run.state] || 'idle'}`, word),
    run.name === 'trade-offs' && v?.rows ? [tradeChart(v.rows), tradeTable(v.rows), fileTable(v.files || [])] : null,
    figures.length ? h('table.grid.figures', h('tbody', figures.map(([k, val]) => h('tr', h('th', k), h('td.small', figure(val)))))) : null);
}

function runPanel(run) {
  if (!run) return h('p.zero#demo-none', 'No scenario has run on this node yet. Choose one above.');
  const lines = narrationOf(run, store.events);
  const step = run.step || {};
  return h('div#demo-run', { 'data-id': run.id, 'data-name': run.name, 'data-state': run.state },
    h('h3', `${run.name}${run.short ? ' (short)' : ''} · `, h(`span.badge.${STATE_CLASS[run.state] || 'idle'}#demo-state`, run.state), ` · ${run.id} `,
      run.state === 'running' ? h('button.danger.admin-only#demo-stop', { on: { click: () => stop(run.id) } }, 'Stop') : null),
    h('div.progress-row', h('progress', { max: step.of || 1, value: step.index || 0 }), h('span#demo-step', step.of ? `step ${step.index}/${step.of}: ${step.title}` : 'starting')),
    h('ol.narration#demo-narration', lines.map((l) => h('li', { class: l.live ? 'live' : '' }, h('time', l.at_ms == null ? 'now' : `${(l.at_ms / 1000).toFixed(1)} s`), h('span', l.text)))),
    verdict(run));
}

function render() {
  if (!el) return;
  if (!available) return fill(el, h('section.card', notAvailable('Guided scenarios (/api/demos)')));
  const run = runs.find((r) => r.id === shown);
  const others = elsewhere(store.events, new Set(runs.map((r) => r.id)));
  const sig = JSON.stringify([runs.map((r) => [r.id, r.state, r.narration?.length, r.step?.index]), shown, refused, narrationOf(run, store.events).length, others.map((o) => o.lines.length), document.body.classList.contains('read-only')]);
  if (sig === lastSig) return;
  lastSig = sig;
  const past = runs.filter((r) => r.id !== shown).slice(-6).reverse();
  fill(el,
    h('section.card', h('h3', 'Guided scenarios'),
      h('p.note', 'Each one shows one idea on this running cluster, says what it does as it goes and ends with a verdict measured on the spot. It refuses to start while another runs or the cluster is not healthy, and puts back what it changed when it ends or is stopped.'),
      chooser()),
    h('section.card', runPanel(run)),
    past.length ? h('section.card', h('h3', 'Earlier runs on this node'), h('ul.events', past.map((r) => h('li', h(`span.badge.${STATE_CLASS[r.state] || 'idle'}`, r.state), h('button.link', { on: { click: () => { shown = r.id; render(); } } }, `${r.name}${r.short ? ' (short)' : ''} ${r.id}`))))) : null,
    others.length ? h('section.card#demo-elsewhere', h('h3', 'Runs seen on the event stream (started elsewhere)'), others.map((o) => h('details', h('summary', `${o.name} ${o.id}: step ${o.step}, ${o.lines.length} lines`), h('ol.narration', o.lines.map((t) => h('li', t)))))) : null);
}

export default {
  id: 'scenarios',
  title: 'Scenarios',
  mount(root, s) {
    el = root;
    store = s;
    lastSig = '';
    refresh();
    timer = setInterval(refresh, 1000);
  },
  unmount() { clearInterval(timer); el = null; },
  update(s) { store = s; render(); },
};
