// Overview: a verdict sentence, what the cluster tolerates, every node's live state and the
// last events.

import { badge, count, fill, fmtAge, fmtBytes, fmtTime, h, nodeChip } from '../ui.js';
import { eventLine } from './events.js';

let el;

/** What changed last for each node, from the event buffer. */
function lastChange(events, id) {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e.node === id && e.type !== 'page') return e;
  }
  return null;
}

export function verdict(s) {
  const q = s.cluster?.replicated_quorum || s.cluster?.quorum;
  const rows = s.nodes || [];
  const down = rows.filter((n) => n.state === 'down').length;
  const suspect = rows.filter((n) => n.state === 'suspect').length;
  if (!rows.length || !q) return { cls: 'idle', text: 'Waiting for the first snapshot…', writes: null, reads: null };
  const writes = q.n - q.w - down;
  const reads = q.n - q.r - down;
  let text;
  let cls = 'ok';
  if (down === 0 && suspect === 0) text = 'Your cluster is healthy: every node is alive.';
  else {
    cls = writes < 0 || reads < 0 ? 'bad' : 'warn';
    text = `${down} node${down === 1 ? '' : 's'} down, ${suspect} suspect: ${writes < 0 ? 'some writes cannot reach W replicas (they need hints to succeed on the others)' : 'every key still reaches its quorums'}.`;
  }
  return { cls, text, writes, reads };
}

function tolerance(n, what) {
  if (n == null) return '';
  if (n < 0) return `${what}: some keys are below quorum now.`;
  if (n === 0) return `${what} survive no more node loss (any further failure may block some keys).`;
  return `${what} survive ${n} more node loss${n === 1 ? '' : 'es'} for every key.`;
}

export default {
  id: 'overview',
  title: 'Overview',
  mount(root) {
    el = root;
  },
  update(s) {
    const v = verdict(s);
    const r = s.cluster?.raft;
    const rows = s.nodes || [];
    const q = s.cluster?.replicated_quorum || s.cluster?.quorum;
    const states = ['alive', 'suspect', 'down', 'unknown'].map((st) => [st, rows.filter((n) => (n.state || 'unknown') === st).length]);
    const moving = rows.filter((n) => n.redistribution?.running);
    fill(el,
      h(`p.verdict.${v.cls}#verdict`, v.text),
      h('div.blocks',
        h('section.block',
          h('h3', 'Nodes'),
          h('div.counts', states.map(([st, n]) => h('span.stat', count(n, st === 'alive' ? 'ok' : st === 'suspect' ? 'warn' : 'bad'), ' ', badge(st)))),
          h('p.note', tolerance(v.writes, 'Writes')), h('p.note', tolerance(v.reads, 'Reads'))),
        h('section.block',
          h('h3', 'Data'),
          h('p', 'Keys held (all replicas): ', h('b', rows.reduce((a, n) => a + (n.kv_keys || 0), 0))),
          h('p', q ? `Each key on N=${q.n} nodes; a write needs W=${q.w} acks, a read R=${q.r} answers.` : ''),
          h('p', 'Redistribution running on: ', moving.length ? moving.map((n) => [nodeChip(n.id), ` ${n.redistribution.percent}% `]) : h('span.zero', 'none'))),
        h('section.block',
          h('h3', 'Raft'),
          h('p', 'Leader: ', r?.leader ? nodeChip(r.leader) : h('span.count.bad', 'none'), r?.leader ? '' : ' (membership and settings cannot change until one is elected)'),
          h('p', `Term ${r?.term ?? '—'}, commit index ${r?.commit_index ?? '—'}, voters ${(r?.voters || []).join(', ')}`))),
      h('table.grid#nodes-table',
        h('thead', h('tr', ['node', 'state', 'phi', 'heartbeat', 'Redis', 'keys', 'memory', 'drift', 'Raft', 'what changed last'].map((c) => h('th', c)))),
        h('tbody', rows.map((n) => {
          const last = lastChange(s.events, n.id);
          return h('tr', { 'data-node': n.id, 'data-state': n.state || 'unknown' },
            h('td', nodeChip(n.id), n.is_self ? h('small', ' (this node)') : ''),
            h('td', badge(n.state, n.reason || '')),
            h('td', { title: 'Phi-accrual suspicion: 0 is sure it is alive; the node is suspected past the configured threshold.' }, n.phi ?? '—'),
            h('td', n.is_self ? 'self' : fmtAge(n.last_heartbeat_age_ms)),
            h('td', badge(n.redis_state || (n.redis_up ? 'up' : 'down'), n.redis_reason || '')),
            h('td', n.kv_keys ?? '—'),
            h('td', fmtBytes(n.used_memory_bytes)),
            h('td', { title: `Clock offset from NTP (${n.time_source || 'no source'})` }, n.drift_ms == null ? '—' : `${n.drift_ms} ms`),
            h('td', badge(n.raft_role || 'unknown'), ` term ${n.raft_term ?? '—'}`),
            h('td.small', last ? `${fmtTime(last.at_ms)} ${last.type}: ${last.from ?? ''}→${last.to ?? ''}` : '—'));
        }))),
      h('h3', 'Last events'),
      h('ul.events.short', s.events.slice(-5).reverse().map(eventLine)));
  },
};
