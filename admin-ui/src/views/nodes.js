// Nodes: every node with its actions (stop, start, restart its Redis), adding a running node
// and removing one, with each node's redistribution progress.

import { api, get } from '../api.js';
import { badge, fill, fmtBytes, h, nodeChip, toast } from '../ui.js';

let el;
let table;
let busy = new Set();

async function act(id, action) {
  if (action !== 'start' && !confirm(`${action} node ${id}'s Redis?`)) return;
  busy.add(id);
  try {
    const r = await api('POST', `/api/nodes/${encodeURIComponent(id)}/${action}`);
    toast(`${id}: ${r.result}`);
  } catch (e) {
    toast(`${action} ${id}: ${e.message}`, 'error');
  } finally {
    busy.delete(id);
  }
}

/** The share of keys a change would move, in words ('' when it cannot be previewed). */
async function moves(query) {
  try {
    const r = await get(`/api/ring?${query}`);
    return ` About ${(r.change.moving_share * 100).toFixed(0)}% of the keys change replicas.`;
  } catch { return ''; }
}

async function remove(id) {
  const share = await moves(`without=${encodeURIComponent(id)}`);
  if (!confirm(`Remove node ${id} from the cluster? Its data moves to the other nodes first.${share}`)) return;
  busy.add(id);
  toast(`removing ${id}: its data moves to the remaining nodes…`);
  try {
    await api('DELETE', `/api/nodes/${encodeURIComponent(id)}`);
    toast(`${id} removed`);
  } catch (e) {
    toast(`remove ${id}: ${e.message}`, 'error');
  } finally {
    busy.delete(id);
  }
}

function render(s) {
  fill(table,
    h('thead', h('tr', ['node', 'state', 'Redis', 'addresses', 'phi', 'rtt', 'keys', 'memory', 'restarts', 'redistribution', 'actions'].map((c) => h('th', c)))),
    h('tbody', (s.nodes || []).map((n) => {
      const r = n.redistribution;
      const working = busy.has(n.id);
      return h('tr', { 'data-node': n.id, 'data-state': n.state || 'unknown' },
        h('td', nodeChip(n.id)),
        h('td', badge(n.state, n.reason || '')),
        h('td', badge(n.redis_state || 'unknown', n.redis_reason || '')),
        h('td.small', `redis ${n.host}:${n.redis_port} · http ${n.http_port} · peer ${n.peer_port}`),
        h('td', n.phi ?? '—'),
        h('td', n.rtt_ms == null ? '—' : `${n.rtt_ms.toFixed(1)} ms`),
        h('td', n.kv_keys ?? '—'),
        h('td', fmtBytes(n.used_memory_bytes)),
        h('td', n.redis_restarts ?? '—'),
        h('td', r ? [h('progress', { max: 100, value: r.running ? r.percent : 100 }), r.running ? ` ${r.percent}%` : ' idle'] : '—'),
        h('td.actions',
          h('button.admin-only', { 'data-action': 'stop', disabled: working || n.redis_state === 'stopped', on: { click: () => act(n.id, 'stop') }, title: 'Stop its Redis: the node is marked down within a few heartbeats; writes for it become hints.' }, 'Stop'),
          h('button.admin-only', { 'data-action': 'start', disabled: working || n.redis_up, on: { click: () => act(n.id, 'start') }, title: 'Start its Redis again; hints are replayed to it.' }, 'Start'),
          h('button.admin-only', { 'data-action': 'restart', disabled: working, on: { click: () => act(n.id, 'restart') } }, 'Restart'),
          h('button.danger.admin-only', { 'data-action': 'remove', disabled: working, on: { click: () => remove(n.id) } }, 'Remove')));
    })));
}

export default {
  id: 'nodes',
  title: 'Nodes',
  mount(root) {
    el = root;
    table = h('table.grid#nodes-actions');
    const f = {
      id: h('input', { placeholder: 'id, e.g. n4', required: true, pattern: '[a-z0-9_-]{1,32}' }),
      host: h('input', { placeholder: 'host', value: '127.0.0.1' }),
      redis_port: h('input', { placeholder: 'redis port', type: 'number', required: true }),
      http_port: h('input', { placeholder: 'http port', type: 'number', required: true }),
      peer_port: h('input', { placeholder: 'peer port', type: 'number', required: true }),
    };
    const add = h('form.toolbar.admin-only', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          const body = { id: f.id.value, host: f.host.value, redis_port: +f.redis_port.value, http_port: +f.http_port.value, peer_port: +f.peer_port.value };
          const share = await moves(`with=${encodeURIComponent(body.id)}`);
          if (!confirm(`Admit ${body.id} (${body.host}, Redis ${body.redis_port})?${share} The Ring view shows which stretches move.`)) return;
          toast(`adding ${body.id}…`);
          try { await api('POST', '/api/nodes', body); toast(`${body.id} is a member; data is moving to it (see the progress bars)`); } catch (err) { toast(`add: ${err.message}`, 'error'); }
        },
      },
    }, Object.values(f), h('button', { type: 'submit' }, 'Add node'));
    fill(el,
      h('p.note', 'Stop, start and restart act on a node\'s Redis (its node process keeps reporting). A stopped node is marked down within a few heartbeats.'),
      table,
      h('section.card', h('h3', 'Add a node'),
        h('p.note', 'Start the new node first (rcluster node --config … --id n4 --redis-port … --http-port … --peer-port …), then admit it here: it becomes a member through Raft and the keys it now owns move to it.'),
        add));
  },
  update(s) { render(s); },
};

