// Ring: the hash ring drawn with D3 (each node's virtual nodes as ownership arcs in its colour,
// greyed while the node is down; click an arc for its node's actions), a key probe that walks
// clockwise to the key's preference list (RC.LOCATE through GET /api/locate) with each replica's
// version side by side, a file's chunks and where they live, a preview of a member joining or
// leaving (the stretches that would move and their share), and while data moves after a
// membership change, the moving stretches pulse beside each node's redistribution progress.

import { select } from 'd3-selection';
import { arc } from 'd3-shape';
import { api, get } from '../api.js';
import { badge, fill, fmtBytes, fmtTime, h, nodeChip, nodeColour, svgRoot, toast } from '../ui.js';

const SIZE = 440;
const R = 170;
const TAU = Math.PI * 2;

let svg;
let ringData = null;
let preview = null;
let located = null;
let placement = null;
let moving = null;
let result;
let progress;
let previewBox;
let fileBox;
let loadedAt = 0;
let drawnKey = '';
let lastStore = { nodes: [] };
let knownIds = null;

async function load() {
  try {
    ringData = await get('/api/ring');
    loadedAt = Date.now();
    drawnKey = '';
    const ids = [...ringData.nodes].sort();
    // Membership changed while the page watched: find what moves (the ring without the new
    // member, or with the one that left, against the current one).
    if (knownIds && knownIds.join() !== ids.join()) {
      const added = ids.filter((id) => !knownIds.includes(id));
      const removed = knownIds.filter((id) => !ids.includes(id));
      const q = new URLSearchParams();
      if (added[0]) q.set('without', added[0]);
      if (removed[0]) q.set('with', removed[0]);
      const then = await get(`/api/ring?${q}`);
      moving = { ...then.change, what: added[0] ? `${added[0]} joined` : `${removed[0]} left`, since: Date.now() };
    }
    knownIds = ids;
  } catch (e) {
    toast(`ring: ${e.message}`, 'error');
  }
}

/** The arc of a stretch `after < h <= up_to` (fractions; wrapping when after >= up_to). */
function stretch(after, upTo) {
  const end = upTo <= after ? upTo + 1 : upTo;
  return { startAngle: after * TAU, endAngle: end * TAU };
}

function draw(s) {
  const shown = preview || ringData;
  if (!shown) return;
  const down = new Set((s.nodes || []).filter((n) => n.state === 'down').map((n) => n.id));
  const running = (s.nodes || []).some((n) => n.redistribution?.running);
  const key = `${shown.tokens.length}|${shown.nodes.join()}|${preview ? 'p' : ''}|${[...down].join()}|${located?.key || ''}|${placement?.id || ''}|${moving?.since || ''}|${running}`;
  if (key === drawnKey) return;
  drawnKey = key;
  const g = select(svg).selectAll('g.root').data([0]).join('g').attr('class', 'root').attr('transform', `translate(${SIZE / 2},${SIZE / 2})`);
  const t = shown.tokens;
  // A key between token i-1 and token i belongs to token i's node: one path per node holds
  // all of its arcs (a few paths, not thousands, for 10 nodes of 256 vnodes).
  const a = arc().innerRadius(R - 22).outerRadius(R);
  const byNode = new Map(shown.nodes.map((id) => [id, []]));
  t.forEach((tok, i) => {
    const start = i === 0 ? t[t.length - 1].at - 1 : t[i - 1].at;
    byNode.get(tok.node)?.push(a({ startAngle: start * TAU, endAngle: tok.at * TAU }));
  });
  g.selectAll('path.own').data([...byNode], (d) => d[0]).join('path').attr('class', 'own')
    .attr('d', (d) => d[1].join(''))
    .attr('fill', (d) => (down.has(d[0]) ? '#cbd5e1' : nodeColour(d[0])))
    .attr('data-node-menu', (d) => d[0])
    .selectAll('title').data((d) => [d]).join('title').text((d) => `${d[0]}${down.has(d[0]) ? ' (down)' : ''}: keys hashing into these arcs are stored first on ${d[0]}. Click for its actions.`);
  const tick = (at, r) => `${(Math.sin(at * TAU) * r).toFixed(1)},${(-Math.cos(at * TAU) * r).toFixed(1)}`;
  g.selectAll('path.ticks').data([0]).join('path').attr('class', 'ticks')
    .attr('d', t.length > 3000 ? '' : t.map((d) => `M${tick(d.at, R - 26)}L${tick(d.at, R + 4)}`).join(''))
    .attr('stroke', '#0f172a').attr('stroke-opacity', 0.15).attr('fill', 'none');
  // What moves: a previewed change, or the last membership change while data still moves.
  const change = preview?.change || (moving && (running || Date.now() - moving.since < 15000) ? moving : null);
  const ma = arc().innerRadius(R + 12).outerRadius(R + 12);
  g.selectAll('path.moving').data(change ? change.moving : []).join('path')
    .attr('class', `moving${preview ? '' : ' live'}`)
    .attr('d', (d) => ma(stretch(d.after, d.up_to)));
  // A file's chunks: a dot per chunk at its place.
  g.selectAll('circle.chunkdot').data(placement ? placement.chunks : []).join('circle').attr('class', 'chunkdot')
    .attr('r', 3).attr('fill', '#0f172a')
    .attr('cx', (d) => Math.sin(d.at * TAU) * (R - 32)).attr('cy', (d) => -Math.cos(d.at * TAU) * (R - 32))
    .selectAll('title').data((d) => [d]).join('title').text((d) => `chunk ${d.index}: ${d.preference.join(', ')}`);
  // The probe: the key's place, the clockwise walk to its replicas.
  g.selectAll('g.probe').data(located ? [located] : []).join('g').attr('class', 'probe').each(function probe(d) {
    const p = select(this);
    p.selectAll('*').remove();
    const x = Math.sin(d.at * TAU) * (R + 22);
    const y = -Math.cos(d.at * TAU) * (R + 22);
    const firsts = [];
    const seen = new Set();
    const start = Math.max(0, t.findIndex((tok) => tok.at >= d.at));
    for (let i = 0; i < t.length && firsts.length < d.replicas.length; i++) {
      const tok = t[(start + i) % t.length];
      if (!seen.has(tok.node)) { seen.add(tok.node); firsts.push(tok); }
    }
    const last = firsts[firsts.length - 1];
    if (last) {
      p.append('path').attr('d', arc().innerRadius(R + 6).outerRadius(R + 8)(stretch(d.at, last.at))).attr('fill', '#0f172a').attr('fill-opacity', 0.55).attr('class', 'walk');
    }
    firsts.forEach((tok, i) => {
      p.append('circle').attr('cx', Math.sin(tok.at * TAU) * (R - 11)).attr('cy', -Math.cos(tok.at * TAU) * (R - 11)).attr('r', 7)
        .attr('fill', nodeColour(tok.node)).attr('stroke', '#0f172a').attr('stroke-width', 2).attr('data-node-menu', tok.node);
      const lr = R - 46 - i * 16;
      p.append('text').attr('x', Math.sin(tok.at * TAU) * lr).attr('y', -Math.cos(tok.at * TAU) * lr + 4).attr('text-anchor', 'middle').attr('class', 'replica-label').text(`${i + 1}. ${tok.node}`);
    });
    p.append('circle').attr('cx', x).attr('cy', y).attr('r', 6).attr('fill', '#dc2626');
    p.append('text').attr('x', x * 1.1).attr('y', y * 1.1 + 4).attr('text-anchor', 'middle').attr('class', 'key-label').text(d.key);
  });
  g.selectAll('text.centre').data([0]).join('text').attr('class', 'centre').attr('text-anchor', 'middle')
    .attr('y', 5).text(`${preview ? 'preview: ' : ''}${shown.nodes.length} nodes × ${shown.vnodes} vnodes`);
  g.selectAll('text.centre2').data(change ? [change] : []).join('text').attr('class', 'centre centre2').attr('text-anchor', 'middle')
    .attr('y', 24).text((c) => `${(c.moving_share * 100).toFixed(1)}% of keys ${preview ? 'would move' : `move (${c.what})`}`);
}

function versionOrder(held) { return held ? [held.physical_ms, held.logical, held.origin] : [-1, 0, '']; }
function cmp(a, b) { return (a[0] - b[0]) || (a[1] - b[1]) || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0); }

function renderResult() {
  if (!located) return fill(result, h('p.note', 'Type a key to see where it lives: the hash puts it on the ring, and walking clockwise the first N distinct nodes hold its replicas.'));
  // Versions order by (physical ms, logical, origin): the packed number is past 2^53.
  const newest = located.replicas.map((r) => versionOrder(r.held)).sort(cmp).pop();
  fill(result,
    h('h3', `Preference list of “${located.key}” (as ${located.observer} places it)`),
    h('table.grid#locate-table',
      h('thead', h('tr', ['#', 'node', 'state', 'version', 'stamped by', 'copy', 'bytes'].map((c) => h('th', c)))),
      h('tbody', located.replicas.map((r, i) => {
        const stale = r.held && cmp(versionOrder(r.held), newest) < 0;
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

function renderPlacement() {
  if (!placement) return fill(fileBox.querySelector('.out'));
  const p = placement;
  const short = p.chunks.filter((c) => c.held_on.length < c.preference.length).length;
  fill(fileBox.querySelector('.out'),
    h('p', `${p.name}: ${fmtBytes(p.size)} in ${p.chunk_count} chunks. `, short ? h('b.warn', `${short} chunk${short === 1 ? '' : 's'} held on fewer nodes than its preference list (being repaired, or a node is down).`) : h('span.ok', 'Every chunk is held on all of its preference nodes.'),
      p.unreachable.length ? h('span.bad', ` Not asked: ${p.unreachable.join(', ')}.`) : ''),
    h('div.chunks#chunk-strip', p.chunks.map((c) => h(`div.chunk${c.held_on.length < c.preference.length ? '.short' : ''}`, { title: `chunk ${c.index}: preference ${c.preference.join(', ')}; held on ${c.held_on.join(', ') || 'no node'}` },
      c.preference.map((n) => h('span', { style: { background: c.held_on.includes(n) ? nodeColour(n) : '#fff', height: `${100 / c.preference.length}%` } }))))),
    h('p.note', 'Each cell is a chunk; its stripes are its preference nodes in order, filled where that node holds it.'));
}

async function loadFiles(sel) {
  try {
    const list = await api('GET', '/api/files?limit=100');
    fill(sel, h('option', { value: '' }, 'a file…'), list.files.map((f) => h('option', { value: f.id }, `${f.name} (${fmtBytes(f.size)})`)));
  } catch { /* no files route answer: leave the list empty */ }
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

function previewForm() {
  const add = h('input#preview-add', { placeholder: 'new node id', size: 10 });
  const remove = h('select#preview-remove', h('option', { value: '' }, 'remove…'), (lastStore.nodes || []).map((n) => h('option', { value: n.id }, n.id)));
  const vnodes = h('input#preview-vnodes', { type: 'number', min: 1, max: 4096, placeholder: 'vnodes' });
  const run = async (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (add.value) q.set('with', add.value);
    if (remove.value) q.set('without', remove.value);
    if (vnodes.value) q.set('vnodes', vnodes.value);
    if (![...q.keys()].length) { preview = null; fill(previewBox.querySelector('.out')); draw(lastStore); return; }
    try {
      preview = await get(`/api/ring?${q}`);
      fill(previewBox.querySelector('.out'), h('p#preview-share', `${(preview.change.moving_share * 100).toFixed(1)}% of the hash space changes replicas: about that share of keys and chunks would be copied (red on the ring). `, h('button.link', { on: { click: () => { preview = null; fill(previewBox.querySelector('.out')); draw(lastStore); } } }, 'Back to the live ring')));
    } catch (err) { toast(`preview: ${err.message}`, 'error'); }
    draw(lastStore);
  };
  return h('form.toolbar#preview-form', { on: { submit: run } }, add, remove, vnodes, h('button', { type: 'submit' }, 'Preview'));
}

export default {
  id: 'ring',
  title: 'Ring',
  mount(root, s) {
    lastStore = s;
    preview = null;
    svg = svgRoot(SIZE, SIZE, 'ring', 'ring-svg');
    const input = h('input#locate-key', { placeholder: 'a key, e.g. user:42', required: true });
    const form = h('form.toolbar#locate-form', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          try { located = await get(`/api/locate/${encodeURIComponent(input.value)}`); } catch (err) { toast(`locate: ${err.message}`, 'error'); }
          renderResult();
          draw(lastStore);
        },
      },
    }, input, h('button', { type: 'submit' }, 'Locate'));
    result = h('div#locate-result');
    progress = h('div#redistribution');
    const fileSel = h('select#placement-file', {
      on: {
        change: async () => {
          placement = null;
          if (fileSel.value) {
            try { placement = await get(`/api/ring/files/${fileSel.value}`); } catch (err) { toast(`file: ${err.message}`, 'error'); }
          }
          renderPlacement();
          draw(lastStore);
        },
      },
    });
    fileBox = h('section.card', h('h3', 'Where a file\'s chunks live'), fileSel, h('div.out'));
    previewBox = h('section.card', h('h3', 'Preview a change'), h('p.note', 'Add or remove a node, or change the virtual nodes, and see which stretches of the ring would change replicas before doing it (Nodes and Consistency views).'), previewForm(), h('div.out'));
    fill(root, h('div.split',
      h('div', svg, h('p.note', 'Each arc is a stretch of the hash space and the node (colour) that owns it; grey arcs belong to a node that is down; red stretches outside the ring move. Ticks are virtual nodes. Click an arc for its node\'s actions.')),
      h('div', h('section.card', h('h3', 'Where a key lives'), form, result), previewBox, fileBox, progress)));
    drawnKey = '';
    load().then(() => draw(lastStore));
    loadFiles(fileSel);
    renderResult();
    renderPlacement();
  },
  update(s) {
    lastStore = s;
    const ids = (s.nodes || []).map((n) => n.id).sort().join();
    if (ringData && (ids !== [...ringData.nodes].sort().join() || (s.cluster?.vnodes && s.cluster.vnodes !== ringData.vnodes)) && Date.now() - loadedAt > 2000) load().then(() => draw(s));
    draw(s);
    renderProgress(s);
  },
};
