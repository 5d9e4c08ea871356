// Ring: the hash ring drawn with D3 (each node's virtual nodes as ownership arcs in its colour,
// greyed while the node is down), a key probe that walks clockwise to the key's preference list
// (RC.LOCATE through GET /api/locate) with each replica's version side by side, and each node's
// redistribution progress.

import { select } from 'd3-selection';
import { arc } from 'd3-shape';
import { get } from '../api.js';
import { badge, fill, fmtTime, h, nodeChip, nodeColour, toast } from '../ui.js';

const SIZE = 420;
const R = 170;
let el;
let svg;
let ringData = null;
let located = null;
let result;
let progress;
let loadedAt = 0;
let drawnKey = '';

const TAU = Math.PI * 2;

async function load() {
  try {
    ringData = await get('/api/ring');
    loadedAt = Date.now();
    drawnKey = '';
  } catch (e) {
    toast(`ring: ${e.message}`, 'error');
  }
}

function draw(s) {
  if (!ringData) return;
  const down = new Set((s.nodes || []).filter((n) => n.state === 'down').map((n) => n.id));
  const key = `${ringData.tokens.length}|${[...down].join()}|${located?.key || ''}`;
  if (key === drawnKey) return;
  drawnKey = key;
  const g = select(svg).selectAll('g.root').data([0]).join('g').attr('class', 'root').attr('transform', `translate(${SIZE / 2},${SIZE / 2})`);
  const t = ringData.tokens;
  // A key between token i-1 and token i belongs to token i's node.
  const segments = t.map((tok, i) => ({ start: i === 0 ? t[t.length - 1].at - 1 : t[i - 1].at, end: tok.at, node: tok.node }));
  const a = arc().innerRadius(R - 22).outerRadius(R);
  g.selectAll('path.own').data(segments).join('path').attr('class', 'own')
    .attr('d', (d) => a({ startAngle: d.start * TAU, endAngle: d.end * TAU }))
    .attr('fill', (d) => (down.has(d.node) ? '#cbd5e1' : nodeColour(d.node)))
    .attr('data-node', (d) => d.node)
    .append('title').text((d) => `${d.node}${down.has(d.node) ? ' (down)' : ''}: keys hashing here are stored first on ${d.node}`);
  g.selectAll('line.tick').data(t).join('line').attr('class', 'tick')
    .attr('x1', (d) => Math.sin(d.at * TAU) * (R - 26)).attr('y1', (d) => -Math.cos(d.at * TAU) * (R - 26))
    .attr('x2', (d) => Math.sin(d.at * TAU) * (R + 4)).attr('y2', (d) => -Math.cos(d.at * TAU) * (R + 4))
    .attr('stroke', '#0f172a').attr('stroke-opacity', t.length > 2000 ? 0.05 : 0.18);
  // The probe: the key's place, the clockwise walk to its replicas.
  const probe = located ? [located] : [];
  g.selectAll('g.probe').data(probe).join('g').attr('class', 'probe').each(function draw1(d) {
    const p = select(this);
    p.selectAll('*').remove();
    const x = Math.sin(d.at * TAU) * (R + 16);
    const y = -Math.cos(d.at * TAU) * (R + 16);
    const firsts = [];
    const seen = new Set();
    const start = t.findIndex((tok) => tok.at >= d.at);
    for (let i = 0; i < t.length && firsts.length < d.replicas.length; i++) {
      const tok = t[(Math.max(start, 0) + i) % t.length];
      if (!seen.has(tok.node)) { seen.add(tok.node); firsts.push(tok); }
    }
    const last = firsts[firsts.length - 1];
    if (last) {
      let end = last.at;
      if (end < d.at) end += 1;
      p.append('path').attr('d', arc().innerRadius(R + 8).outerRadius(R + 10)({ startAngle: d.at * TAU, endAngle: end * TAU }))
        .attr('fill', '#0f172a').attr('fill-opacity', 0.5).attr('class', 'walk');
    }
    firsts.forEach((tok, i) => {
      p.append('circle').attr('cx', Math.sin(tok.at * TAU) * (R - 11)).attr('cy', -Math.cos(tok.at * TAU) * (R - 11)).attr('r', 7)
        .attr('fill', nodeColour(tok.node)).attr('stroke', '#0f172a').attr('stroke-width', 2);
      const lr = R - 44 - i * 16;
      p.append('text').attr('x', Math.sin(tok.at * TAU) * lr).attr('y', -Math.cos(tok.at * TAU) * lr + 4).attr('text-anchor', 'middle').attr('class', 'replica-label').text(`${i + 1}. ${tok.node}`);
    });
    p.append('circle').attr('cx', x).attr('cy', y).attr('r', 6).attr('fill', '#dc2626');
    p.append('text').attr('x', x * 1.12).attr('y', y * 1.12 + 4).attr('text-anchor', 'middle').attr('class', 'key-label').text(d.key);
  });
  g.selectAll('text.centre').data([0]).join('text').attr('class', 'centre').attr('text-anchor', 'middle')
    .attr('y', 5).text(`${ringData.nodes.length} nodes × ${ringData.vnodes} vnodes`);
}

function renderResult() {
  if (!located) return fill(result, h('p.note', 'Type a key to see where it lives: the hash puts it on the ring, and walking clockwise the first N distinct nodes hold its replicas.'));
  // Versions order by (physical ms, logical, origin): the packed number is past 2^53.
  const order = (held) => (held ? [held.physical_ms, held.logical, held.origin] : [-1, 0, '']);
  const cmp = (a, b) => (a[0] - b[0]) || (a[1] - b[1]) || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0);
  const newest = located.replicas.map((r) => order(r.held)).sort(cmp).pop();
  fill(result,
    h('h3', `Preference list of “${located.key}” (as ${located.observer} places it)`),
    h('table.grid#locate-table',
      h('thead', h('tr', ['#', 'node', 'state', 'version', 'stamped by', 'copy', 'bytes'].map((c) => h('th', c)))),
      h('tbody', located.replicas.map((r, i) => {
        const stale = r.held && cmp(order(r.held), newest) < 0;
        return h(`tr${stale ? '.diverged' : ''}`, { 'data-node': r.node },
          h('td', i + 1),
          h('td', nodeChip(r.node)),
          h('td', badge(r.state)),
          h('td', { title: `hybrid timestamp ${r.held?.version ?? ''}` }, r.held ? `${fmtTime(r.held.physical_ms)} +${r.held.logical}${stale ? ' (older)' : ''}` : r.error ? h('span.bad', r.error) : 'nothing held'),
          h('td', r.held?.origin || '—'),
          h('td', r.held ? (r.held.tombstone ? 'tombstone (deleted)' : 'value') : '—'),
          h('td', r.held?.bytes ?? '—'));
      }))),
    h('p.note', 'A replica with an older version (highlighted) is repaired by the next quorum read (read repair) or by anti-entropy.'));
}

function renderProgress(s) {
  const rows = (s.nodes || []).filter((n) => n.redistribution);
  fill(progress, h('h3', 'Redistribution'), rows.length ? rows.map((n) => {
    const r = n.redistribution;
    return h('div.progress-row', { 'data-node': n.id },
      nodeChip(n.id),
      h('progress', { max: 100, value: r.running ? r.percent : 100 }),
      h('span', r.running ? ` ${r.pass_kind} pass: ${r.done}/${r.items} (${r.percent}%)` : ` idle · ${r.passes} passes, ${r.keys_moved} copies moved`));
  }) : h('p.zero', 'No node reports redistribution yet.'));
}

export default {
  id: 'ring',
  title: 'Ring',
  mount(root) {
    el = root;
    svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', `0 0 ${SIZE} ${SIZE}`);
    svg.setAttribute('class', 'ring');
    svg.id = 'ring-svg';
    const input = h('input#locate-key', { placeholder: 'a key, e.g. user:42', required: true });
    const form = h('form.toolbar#locate-form', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          try {
            located = await get(`/api/locate/${encodeURIComponent(input.value)}`);
            located.fetchedAt = Date.now();
          } catch (err) { toast(`locate: ${err.message}`, 'error'); }
          renderResult();
          draw(lastStore);
        },
      },
    }, input, h('button', { type: 'submit' }, 'Locate'));
    result = h('div#locate-result');
    progress = h('div#redistribution');
    fill(el, h('div.split', h('div', svg, h('p.note', 'Each arc is a stretch of the hash space and the node (colour) that owns it; grey arcs belong to a node that is down. Ticks are virtual nodes.')), h('div', form, result, progress)));
    drawnKey = '';
    load().then(() => draw(lastStore));
    renderResult();
  },
  update(s) {
    lastStore = s;
    // Membership or vnodes changed: fetch the ring again.
    const ids = (s.nodes || []).map((n) => n.id).sort().join();
    if (ringData && (ids !== [...ringData.nodes].sort().join() || s.cluster?.vnodes !== ringData.vnodes) && Date.now() - loadedAt > 2000) load().then(() => draw(s));
    draw(s);
    renderProgress(s);
  },
};

let lastStore = { nodes: [] };
