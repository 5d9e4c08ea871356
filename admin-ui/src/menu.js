// The node menu: click a node wherever it is drawn (a chip, a ring arc, a server circle) to act
// on it: watch the cluster from it, stop, start or restart its Redis, or cut it off from the
// others for 30 s (when the node has the faults API). Read keys see the menu without the actions.

import { api, hasRoute } from './api.js';
import { store, watchFrom } from './live.js';
import { badge, h, nodeColour, toast } from './ui.js';

let open = null;

function close() {
  open?.remove();
  open = null;
}

async function act(id, action) {
  close();
  try {
    const r = await api('POST', `/api/nodes/${encodeURIComponent(id)}/${action}`);
    toast(`${id}: ${r.result}`);
  } catch (e) {
    toast(`${action} ${id}: ${e.message}`, 'error');
  }
}

async function isolate(id) {
  close();
  const others = store.nodes.map((n) => n.id).filter((n) => n !== id);
  try {
    const f = await api('POST', '/api/faults', { kind: 'partition', groups: [[id], others], ttl_ms: 30000 });
    toast(`${id} cut off from the others for 30 s (fault ${f.id})`);
  } catch (e) {
    toast(`partition: ${e.message}`, 'error');
  }
}

export async function showNodeMenu(id, x, y) {
  close();
  const n = store.nodes.find((r) => r.id === id) || { id };
  const admin = store.whoami?.role === 'admin';
  const faults = admin && (await hasRoute('/api/faults'));
  open = h('div.menu#node-menu', { role: 'menu', 'data-node': id, style: { left: `${x}px`, top: `${y}px`, borderColor: nodeColour(id) } },
    h('div.menu-head', h('b', id), ' ', badge(n.state), n.raft_role === 'leader' ? [' ', badge('leader')] : ''),
    h('button.link', { on: { click: () => { close(); watchFrom(id); } } }, 'Watch the cluster from this node'),
    admin ? [
      h('button.link', { 'data-action': 'stop', disabled: n.redis_state === 'stopped', on: { click: () => act(id, 'stop') } }, 'Stop its Redis'),
      h('button.link', { 'data-action': 'start', disabled: n.redis_up, on: { click: () => act(id, 'start') } }, 'Start its Redis'),
      h('button.link', { 'data-action': 'restart', on: { click: () => act(id, 'restart') } }, 'Restart its Redis'),
      faults ? h('button.link', { 'data-action': 'isolate', on: { click: () => isolate(id) } }, 'Cut it off from the others for 30 s') : null,
    ] : h('p.note', 'A read key cannot act on nodes.'));
  document.body.append(open);
  const r = open.getBoundingClientRect();
  if (r.right > innerWidth) open.style.left = `${innerWidth - r.width - 8}px`;
  if (r.bottom > innerHeight) open.style.top = `${innerHeight - r.height - 8}px`;
}

export function installNodeMenu() {
  document.addEventListener('click', (e) => {
    const target = e.target.closest?.('[data-node-menu]');
    if (target) {
      e.preventDefault();
      e.stopPropagation();
      showNodeMenu(target.getAttribute('data-node-menu'), e.clientX + 4, e.clientY + 4);
    } else if (open && !open.contains(e.target)) close();
  }, true);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') close(); });
}
