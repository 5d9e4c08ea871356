// Consistency: the cluster's N, W, R, virtual nodes and chunk size, changed through Raft
// (PUT /api/cluster/quorum and /api/cluster/settings), with what each choice guarantees.

import { api } from '../api.js';
import { fill, h, toast } from '../ui.js';

let el;
let explain;
let inputs;

export function guarantee(n, w, r, nodes) {
  const lines = [];
  if (!(w >= 1 && r >= 1 && n >= 1)) return ['Give N, W and R of at least 1.'];
  if (w > n || r > n) lines.push(['bad', `W and R cannot exceed N (${n}).`]);
  if (n > nodes) lines.push(['bad', `N cannot exceed the node count (${nodes}).`]);
  lines.push(r + w > n
    ? ['ok', `R + W = ${r + w} > N = ${n}: every read quorum meets every write quorum, so a read sees the latest acknowledged write.`]
    : ['warn', `R + W = ${r + w} ≤ N = ${n}: a read may miss an acknowledged write (it is repaired later): eventual consistency.`]);
  lines.push(w * 2 > n
    ? ['ok', `W = ${w} > N/2: two writes to the same key always meet on a replica.`]
    : ['warn', `W = ${w} ≤ N/2: two concurrent writes may land on disjoint replicas; the newer version wins when they meet.`]);
  lines.push(['idle', `Cost: a write waits for the ${w}${w === 1 ? 'st' : w === 2 ? 'nd' : w === 3 ? 'rd' : 'th'} fastest of ${n} replicas and fails while ${n - w + 1} are down; a read waits for ${r} and fails while ${n - r + 1} are down. Each key takes ${n}× its size.`]);
  return lines;
}

function renderExplain(nodes) {
  const [n, w, r] = ['n', 'w', 'r'].map((k) => Number(inputs[k].value));
  fill(explain, guarantee(n, w, r, nodes).map(([cls, text]) => h(`p.${cls}`, text)));
}

export default {
  id: 'consistency',
  title: 'Consistency',
  mount(root, s) {
    el = root;
    const q = s.cluster?.replicated_quorum || s.cluster?.quorum || { n: 3, w: 2, r: 2 };
    const nodes = (s.nodes || []).length || 3;
    inputs = {
      n: h('input#q-n', { type: 'number', min: 1, max: nodes, value: q.n }),
      w: h('input#q-w', { type: 'number', min: 1, value: q.w }),
      r: h('input#q-r', { type: 'number', min: 1, value: q.r }),
      vnodes: h('input#s-vnodes', { type: 'number', min: 1, max: 4096, value: s.cluster?.vnodes ?? 256 }),
      chunk: h('input#s-chunk', { type: 'number', min: 1048576, max: 5242880, step: 1024, value: s.cluster?.chunk_size_bytes ?? 1048576 }),
    };
    explain = h('div.explain#q-explain');
    for (const k of ['n', 'w', 'r']) inputs[k].addEventListener('input', () => renderExplain(nodes));
    const quorumForm = h('form.toolbar', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          try {
            const res = await api('PUT', '/api/cluster/quorum', { n: +inputs.n.value, w: +inputs.w.value, r: +inputs.r.value });
            toast(`committed at index ${res.committed_index} by ${res.leader}`);
          } catch (err) { toast(`quorum: ${err.message}`, 'error'); }
        },
      },
    }, h('label', 'N ', inputs.n), h('label', 'W ', inputs.w), h('label', 'R ', inputs.r), h('button.admin-only', { type: 'submit' }, 'Apply through Raft'));
    const settingsForm = h('form.toolbar', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          try {
            const res = await api('PUT', '/api/cluster/settings', { vnodes: +inputs.vnodes.value, chunk_size_bytes: +inputs.chunk.value });
            toast(`committed: ${res.vnodes} vnodes, chunks of ${res.chunk_size_bytes} bytes`);
          } catch (err) { toast(`settings: ${err.message}`, 'error'); }
        },
      },
    }, h('label', 'virtual nodes ', inputs.vnodes), h('label', 'chunk bytes ', inputs.chunk), h('button.admin-only', { type: 'submit' }, 'Apply through Raft'));
    fill(el,
      h('section.card', h('h3', 'Quorum (default for every request)'), quorumForm, explain,
        h('p.note', 'A request may still ask for its own W or R (Data view). Changes are proposed to the Raft leader and apply on every node once committed.')),
      h('section.card', h('h3', 'Ring and files'), settingsForm,
        h('p.note', 'More virtual nodes spread keys more evenly across nodes (and move fewer keys at once when a node joins) at a little memory per node; changing them moves the data whose placement changed. The chunk size applies to new uploads: larger chunks mean fewer round trips, smaller ones less memory per transfer.')));
    renderExplain(nodes);
  },
  update() {},
};
