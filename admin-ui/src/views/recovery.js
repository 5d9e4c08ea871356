// Recovery: hints waiting per node (this node's /metrics), read repairs, anti-entropy and
// redistribution passes (rebalance events and snapshots), and how long the last failure took
// to be detected and repaired (from the events).

import { count, fill, fmtAge, fmtTime, h, nodeChip } from '../ui.js';

let el;
let metricsBox;
let timer;

/** Parses Prometheus text into [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

async function loadMetrics(s) {
  try {
    const res = await fetch('/metrics');
    const all = parseMetrics(await res.text());
    const hints = all.filter((m) => m.name === 'rcluster_hint_backlog_hints');
    const oldest = new Map(all.filter((m) => m.name === 'rcluster_hint_backlog_oldest_seconds').map((m) => [m.labels.target, m.value]));
    const COUNTERS = [
      ['rcluster_hints_stored_total', 'hints stored here (writes for a node that missed them)'],
      ['rcluster_hints_replayed_total', 'hints delivered once their node answered'],
      ['rcluster_hints_refused_total', 'hints refused (max_hint_bytes_per_node reached)'],
      ['rcluster_stale_replicas_found_total', 'stale replicas found by reads'],
      ['rcluster_read_repairs_total', 'read repairs acknowledged'],
      ['rcluster_anti_entropy_passes_total', 'anti-entropy passes'],
      ['rcluster_anti_entropy_repairs_total', 'copies anti-entropy gave owners that lacked them'],
      ['rcluster_chunk_repairs_total', 'chunk replicas rewritten from an intact copy'],
    ];
    const module = COUNTERS.map(([name, what]) => [what, all.filter((m) => m.name === name).reduce((a, m) => a + m.value, 0), all.some((m) => m.name === name)]).filter((c) => c[2]);
    fill(metricsBox,
      h('h3', 'Hints held by ', nodeChip(s.whoami?.observer || '?'), h('small', ' (writes waiting for a node that was down; replayed when it answers)')),
      hints.length ? h('table.grid#hints', h('tbody', hints.map((m) => h('tr', h('td', 'for ', nodeChip(m.labels.target)), h('td', count(m.value), ' hints'), h('td.small', oldest.has(m.labels.target) ? `oldest ${Math.round(oldest.get(m.labels.target))} s` : ''))))) : h('p.zero#hints', 'No hints waiting.'),
      h('h3', 'Hints and repairs counted by this node since its start'),
      module.length ? h('table.grid#repair-counters', h('tbody', module.map(([what, v]) => h('tr', h('td', what), h('td', count(v, 'ok')))))) : h('p.zero', 'This node\'s /metrics has no repair counters.'),
      h('p.note', 'Each node reports its own; open another node\'s page to see what it holds.'));
  } catch (e) {
    fill(metricsBox, h('p.bad', `metrics: ${e.message}`));
  }
}

/** For each node: when it went down, how long until it was seen down, and when it was repaired. */
export function failures(events) {
  const out = [];
  const open = new Map();
  for (const e of events) {
    if (e.type === 'redis_state' && /stopped|crashed|exited|backoff|down/.test(`${e.to}`)) {
      // The Redis state may be told before or after the node is seen down: the earliest counts.
      const f = open.get(e.node) || { node: e.node, failedAt: null };
      f.failedAt = Math.min(f.failedAt ?? Infinity, e.at_ms);
      f.cause = `${e.to}: ${e.reason || ''}`;
      open.set(e.node, f);
    }
    if (e.type === 'node_state' && e.to === 'down') {
      const f = open.get(e.node) || { node: e.node, failedAt: null, cause: e.reason };
      if (!f.detectedAt) f.detectedAt = e.at_ms;
      open.set(e.node, f);
    }
    if (e.type === 'node_state' && e.to === 'alive' && open.has(e.node)) {
      const f = open.get(e.node);
      f.backAt = e.at_ms;
      out.push(f);
      open.delete(e.node);
    }
    if (e.type === 'rebalance' && e.phase === 'finished') {
      for (const f of out) if (f.backAt && !f.repairedAt && e.at_ms >= f.backAt) f.repairedAt = e.at_ms;
    }
  }
  return [...out, ...open.values()].sort((a, b) => (b.failedAt || b.detectedAt || 0) - (a.failedAt || a.detectedAt || 0));
}

function render(s) {
  const passes = s.events.filter((e) => e.type === 'rebalance' && e.phase !== 'progress').slice(-12).reverse();
  const f = failures(s.events).slice(0, 6);
  const box = el.querySelector('#recovery-live');
  fill(box,
    h('section.card', h('h3', 'Failures: detection and repair'),
      f.length ? h('table.grid#failures', h('thead', h('tr', ['node', 'failed', 'seen down after', 'back after', 'repaired (pass finished) after', 'cause'].map((c) => h('th', c)))),
        h('tbody', f.map((x) => h('tr', h('td', nodeChip(x.node)), h('td', fmtTime(x.failedAt || x.detectedAt)),
          h('td', x.failedAt && x.detectedAt ? fmtAge(Math.max(0, x.detectedAt - x.failedAt)) : '—'),
          h('td', x.backAt ? fmtAge(x.backAt - (x.failedAt || x.detectedAt)) : 'still down'),
          h('td', x.repairedAt ? fmtAge(x.repairedAt - (x.failedAt || x.detectedAt)) : '—'),
          h('td.small', x.cause || ''))))) : h('p.zero', 'No failure seen since the page opened.')),
    h('section.card', h('h3', 'Anti-entropy, sweeps and redistribution'),
      passes.length ? h('ul.events', passes.map((e) => h('li', h('time', fmtTime(e.at_ms)), nodeChip(e.node), ` ${e.pass_kind} pass ${e.pass} ${e.phase}`, e.phase === 'finished' ? `: ${e.keys_moved} copies moved, ${e.keys_dropped} dropped` : ''))) : h('p.zero', 'No pass seen since the page opened.'),
      h('div', (s.nodes || []).filter((n) => n.redistribution).map((n) => h('div.progress-row', nodeChip(n.id), h('progress', { max: 100, value: n.redistribution.running ? n.redistribution.percent : 100 }), ` ${n.redistribution.running ? `${n.redistribution.pass_kind} ${n.redistribution.percent}%` : `idle, ${n.redistribution.keys_moved} moved in all`}`)))));
}

export default {
  id: 'recovery',
  title: 'Recovery',
  mount(root, s) {
    el = root;
    metricsBox = h('section.card#recovery-metrics');
    fill(el, metricsBox, h('div#recovery-live'));
    loadMetrics(s);
    timer = setInterval(() => loadMetrics(lastStore), 3000);
    lastStore = s;
  },
  unmount() { clearInterval(timer); },
  update(s) { lastStore = s; render(s); },
};

let lastStore = null;
