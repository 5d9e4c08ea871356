// Raft and time: leader, term and commit index per node, elections over time (term changes in
// the snapshots the page received), and each node's clock drift over time.

import { select } from 'd3-selection';
import { line } from 'd3-shape';
import { badge, fill, fmtTime, h, nodeChip, nodeColour, svgRoot, termColour } from '../ui.js';

let el;

/** Term changes seen per node in the snapshots: the elections. */
export function elections(snapshots) {
  const last = new Map();
  const out = [];
  for (const s of snapshots) {
    for (const r of s.rows) {
      const before = last.get(r.id);
      if (before != null && r.term > before) out.push({ at: s.at, node: r.id, from: before, to: r.term, role: r.role });
      if (r.term != null) last.set(r.id, r.term);
    }
  }
  return out;
}

function chart(snapshots, pick, label) {
  const W = 560;
  const H = 140;
  const svg = svgRoot(W, H, 'chart');
  if (snapshots.length < 2) return svg;
  const t0 = snapshots[0].at;
  const t1 = snapshots[snapshots.length - 1].at;
  const ids = [...new Set(snapshots.flatMap((s) => s.rows.map((r) => r.id)))];
  const values = snapshots.flatMap((s) => s.rows.map(pick)).filter((v) => v != null);
  const lo = Math.min(0, ...values);
  const hi = Math.max(1, ...values);
  const x = (t) => 30 + ((t - t0) / Math.max(1, t1 - t0)) * (W - 40);
  const y = (v) => H - 20 - ((v - lo) / (hi - lo || 1)) * (H - 30);
  const g = select(svg);
  g.append('text').attr('x', 4).attr('y', 12).attr('class', 'axis').text(`${label}: ${lo}..${hi}, last ${Math.round((t1 - t0) / 1000)} s`);
  for (const id of ids) {
    const pts = snapshots.map((s) => [s.at, pick(s.rows.find((r) => r.id === id) || {})]).filter((p) => p[1] != null);
    g.append('path').attr('d', line().x((p) => x(p[0])).y((p) => y(p[1]))(pts)).attr('fill', 'none').attr('stroke', nodeColour(id)).attr('stroke-width', 2).append('title').text(id);
  }
  return svg;
}

export default {
  id: 'raft',
  title: 'Raft & time',
  mount(root) { el = root; },
  update(s) {
    const r = s.cluster?.raft;
    const ev = elections(s.snapshots).slice(-10).reverse();
    const t = s.cluster?.time;
    fill(el,
      h('div.split',
        h('section.card',
          h('h3', 'Raft per node'),
          h('p', 'Leader: ', r?.leader ? nodeChip(r.leader) : h('b.bad', 'none known'), ` · term ${r?.term ?? '—'} · commit index ${r?.commit_index ?? '—'} (as ${s.cluster?.observer} sees it)`),
          h('div.servers', (s.nodes || []).map((n) => h('div.server', { style: { background: termColour(n.raft_term) }, title: `term ${n.raft_term}; the fill colour is the term (as in RaftScope)`, 'data-node': n.id },
            h('div.sid', nodeChip(n.id)), h('div.term', `term ${n.raft_term ?? '—'}`), badge(n.raft_role || 'unknown'), h('div.small', `commit ${n.raft_commit_index ?? '—'} · epoch ${n.topology_epoch ?? '—'}`))))),
        h('section.card',
          h('h3', 'Elections seen'),
          ev.length ? h('ul.events', ev.map((e) => h('li', h('time', fmtTime(e.at)), nodeChip(e.node), ` term ${e.from} → ${e.to} (${e.role})`))) : h('p.zero', 'No term change since the page opened.'),
          chart(s.snapshots, (row) => row.term, 'term'))),
      h('section.card',
        h('h3', 'Clock drift from NTP'),
        h('p.note', `This node's time source: ${t?.source || '—'}${t?.error ? ` (${t.error})` : ''}. Without NTP the hybrid logical clock keeps versions ordered on its logical part.`),
        h('table.grid', h('tbody', (s.nodes || []).map((n) => h('tr', h('td', nodeChip(n.id)), h('td', n.drift_ms == null ? '— (no NTP answer)' : `${n.drift_ms} ms`), h('td', n.time_source || '—'))))),
        chart(s.snapshots, (row) => row.drift, 'drift ms')));
  },
};
