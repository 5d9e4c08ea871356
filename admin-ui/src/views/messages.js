// Messages: what travels between the nodes, animated RaftScope-style on a circle of nodes from
// the real cluster's events (a state change travels from the node to the node that saw it) and
// traces (GET /api/traces: the coordinator's fan-out and the replicas' answers) and the
// heartbeats the followed node received (from its snapshots' heartbeat ages), with pause,
// step, speed and replay of the last minute. Also the lane drawing of one trace (Data view).

import { select } from 'd3-selection';
import { optional } from '../api.js';
import { fill, fmtTime, h, nodeChip, nodeColour, svgRoot } from '../ui.js';

const SIZE = 420;
const RADIUS = 150;
const MIN_FLIGHT_MS = 400;
const REPLAY_MS = 60000;

let el;
let svg;
let info;
let raf = 0;
let mode = 'live';
let cursor = 0;
let speed = 1;
let lastFrame = 0;
let traces = [];
let tracesAvailable = null;
let timer;
let lastStore = { events: [], nodes: [] };

/**
 * A trace's event on the page's timeline: the request's start plus its microseconds drawn as
 * milliseconds (traces play 1000× slower than they ran, so a fan-out and its answers show).
 */
function traceMs(trace, ev) {
  return (trace.started_unix_ms || 0) + Number(ev.at_us || 0);
}

/** What a replica sends back to the coordinator, and what is lost on the way. */
const REPLIES = new Set(['ack', 'newer', 'answer', 'stale', 'error', 'repair_ack', 'repair_error']);
const REQUESTS = new Set(['asked', 'repair', 'reissue']);

/** The messages of one trace: each request out to a replica, each answer back (a timeout is a
 * request whose answer never came). */
export function traceMessages(t) {
  const out = [];
  const coord = t.coordinator;
  const evs = (t.events || []).slice().sort((a, b) => a.at_us - b.at_us);
  const label = (ev) => `${t.command} ${t.key}: ${ev.what}${ev.version ? ` ${ev.version}` : ''}${ev.why ? ` (${ev.why})` : ''}`;
  evs.forEach((ev, i) => {
    if (!ev.node || ev.node === coord) return;
    const at = traceMs(t, ev);
    if (REQUESTS.has(ev.what)) {
      const answer = evs.slice(i + 1).find((e) => e.node === ev.node && (REPLIES.has(e.what) || e.what === 'timeout'));
      const until = answer ? traceMs(t, answer) : at + MIN_FLIGHT_MS;
      out.push({ from: coord, to: ev.node, sent: at, recv: Math.max(at + MIN_FLIGHT_MS / 2, (at + until) / 2), kind: ev.what === 'asked' && ev.hint_for ? 'hint' : 'trace', label: label(ev) });
    } else if (REPLIES.has(ev.what)) {
      out.push({ from: ev.node, to: coord, sent: at - MIN_FLIGHT_MS / 2, recv: at, kind: /error/.test(ev.what) ? 'lost' : 'trace', label: label(ev) });
    } else if (ev.what === 'timeout') {
      out.push({ from: ev.node, to: coord, sent: at - MIN_FLIGHT_MS / 2, recv: at, kind: 'lost', label: label(ev) });
    }
  });
  return out;
}

/** Heartbeats the observing node received, from the snapshots' heartbeat ages. */
function heartbeats(snapshots) {
  const out = [];
  const seen = new Set();
  for (const s of snapshots.slice(-90)) {
    for (const r of s.rows) {
      if (r.self || r.hb == null || r.id === s.observer) continue;
      const recv = s.at - r.hb;
      const id = `${r.id}>${s.observer}@${Math.round(recv / 50)}`;
      if (seen.has(id)) continue;
      seen.add(id);
      out.push({ from: r.id, to: s.observer, sent: recv - MIN_FLIGHT_MS, recv, kind: 'heartbeat', label: `heartbeat ${r.id} → ${s.observer}` });
    }
  }
  return out;
}

/** Messages (from, to, sent, recv, kind, label) drawn from the events, snapshots and traces. */
export function messagesOf(events, traceList, snapshots = []) {
  const out = heartbeats(snapshots);
  for (const e of events) {
    if (!e.node || e.type === 'page') continue;
    const to = e.observer && e.observer !== e.node ? e.observer : e.node;
    out.push({ from: e.node, to, sent: e.at_ms - MIN_FLIGHT_MS, recv: e.at_ms, kind: e.type, label: `${e.type} ${e.from ?? ''}→${e.to ?? e.action ?? ''}` });
  }
  for (const t of traceList) out.push(...traceMessages(t));
  return out.sort((a, b) => a.recv - b.recv);
}

/** messagesOf for the store, computed again only when events, snapshots or traces changed. */
let memoKey = '';
let memoValue = [];
function memo(s) {
  const key = `${s.seq}|${s.snapshots.length}|${s.snapshots[s.snapshots.length - 1]?.at}|${traces.length}`;
  if (key !== memoKey) {
    memoKey = key;
    memoValue = messagesOf(s.events, traces, s.snapshots);
  }
  return memoValue;
}

function positions(ids) {
  const p = new Map();
  ids.forEach((id, i) => {
    const a = (i / ids.length) * Math.PI * 2;
    p.set(id, [SIZE / 2 + Math.sin(a) * RADIUS, SIZE / 2 - Math.cos(a) * RADIUS]);
  });
  return p;
}

const KIND_COLOUR = { heartbeat: '#94a3b8', hint: '#60a5fa', lost: '#dc2626', node_state: '#dc2626', redis_state: '#f97316', rebalance: '#10b981', fault: '#7c3aed', trace: '#2563eb' };

function frame(now) {
  raf = requestAnimationFrame(frame);
  const dt = lastFrame ? now - lastFrame : 0;
  lastFrame = now;
  if (mode === 'live') cursor = Date.now() - 500;
  else if (mode === 'play') {
    cursor += dt * speed;
    if (cursor >= Date.now() - 500) mode = 'live';
  }
  draw();
}

function draw() {
  const s = lastStore;
  const ids = (s.nodes || []).map((n) => n.id);
  const pos = positions(ids);
  const all = memo(s);
  const flying = all.filter((m) => m.sent <= cursor && cursor <= m.recv + 150 && pos.has(m.from) && pos.has(m.to));
  const root = select(svg);
  const cut = (a, b) => partitions.some((g) => {
    const side = (id) => { const i = g.findIndex((grp) => grp.includes(id)); return i < 0 ? g.length : i; };
    return side(a) !== side(b);
  });
  root.selectAll('line.link').data(ids.flatMap((a, i) => ids.slice(i + 1).map((b) => [a, b]))).join('line')
    .attr('class', (d) => (cut(d[0], d[1]) ? 'link cut' : 'link'))
    .attr('x1', (d) => pos.get(d[0])[0]).attr('y1', (d) => pos.get(d[0])[1]).attr('x2', (d) => pos.get(d[1])[0]).attr('y2', (d) => pos.get(d[1])[1]);
  const nodeG = root.selectAll('g.srv').data(s.nodes || [], (d) => d.id).join((enter) => {
    const g = enter.append('g').attr('class', 'srv');
    g.append('circle').attr('r', 28);
    g.append('text').attr('class', 'sid').attr('text-anchor', 'middle').attr('y', 4);
    g.append('text').attr('class', 'sterm').attr('text-anchor', 'middle').attr('y', 44);
    return g;
  });
  nodeG.attr('transform', (d) => `translate(${pos.get(d.id)})`).attr('data-node', (d) => d.id).attr('data-node-menu', (d) => d.id);
  nodeG.select('circle').attr('fill', (d) => (d.state === 'down' ? '#e2e8f0' : nodeColour(d.id))).attr('stroke', (d) => (d.raft_role === 'leader' ? '#0f172a' : 'none')).attr('stroke-width', 4);
  nodeG.select('text.sid').text((d) => d.id);
  nodeG.select('text.sterm').text((d) => `${d.raft_role || ''} t${d.raft_term ?? ''}`);
  root.selectAll('circle.msg').data(flying).join('circle').attr('class', 'msg')
    .attr('r', (m) => (m.kind === 'heartbeat' ? 4 : 7))
    .attr('fill', (m) => KIND_COLOUR[m.kind] || '#475569')
    .attr('cx', (m) => { const f = Math.min(1, (cursor - m.sent) / (m.recv - m.sent || 1)); return pos.get(m.from)[0] + (pos.get(m.to)[0] - pos.get(m.from)[0]) * f; })
    .attr('cy', (m) => { const f = Math.min(1, (cursor - m.sent) / (m.recv - m.sent || 1)); return pos.get(m.from)[1] + (pos.get(m.to)[1] - pos.get(m.from)[1]) * f; })
    .selectAll('title').data((m) => [m]).join('title').text((m) => m.label);
  const behind = Date.now() - cursor;
  fill(info,
    h('span#msg-mode', { 'data-mode': mode }, mode === 'live' ? 'live' : mode === 'paused' ? 'paused' : `replaying at ${speed}×`),
    ` · ${fmtTime(Math.round(cursor))}`,
    behind > 1500 ? [` · ${(behind / 1000).toFixed(1)} s behind live `, h('button.link', { on: { click: () => { mode = 'live'; } } }, 'Jump to live')] : '',
    ` · ${flying.length} in flight, ${all.length} in the buffer`,
    h('ul.events.short', flying.slice(-4).map((m) => h('li', nodeChip(m.from), ' → ', nodeChip(m.to), ` ${m.label}`))));
}

/** The groups of the active partitions (GET /api/faults, admin keys), to draw the links cut. */
let partitions = [];
async function loadFaults() {
  const f = await optional('/api/faults').catch(() => null);
  partitions = (f?.faults || []).filter((x) => x.groups).map((x) => x.groups);
}

async function loadTraces() {
  const list = await optional('/api/traces').catch(() => null);
  tracesAvailable = list !== null;
  if (!list) return;
  const recent = (list.traces || []).slice(0, 20);
  const have = new Map(traces.map((t) => [t.id, t]));
  traces = (await Promise.all(recent.map((t) => have.get(t.id) || optional(`/api/traces/${encodeURIComponent(t.id)}`).catch(() => null)))).filter(Boolean);
}

/** One trace as lanes: a lane per node, the coordinator's fan-out and the answers over time. */
export function traceLanes(trace) {
  const evs = (trace.events || []).slice().sort((a, b) => a.at_us - b.at_us);
  const nodes = [...new Set([trace.coordinator, ...evs.map((e) => e.node)])].filter(Boolean);
  const W = 720;
  const LANES = 380;
  const rowH = 22;
  const H = 44 + evs.length * rowH;
  const lane = (id) => 50 + (nodes.indexOf(id) * (LANES - 80)) / Math.max(1, nodes.length - 1);
  const t0 = evs[0]?.at_us || 0;
  const coord = trace.coordinator;
  const s = svgRoot(W, H, 'lanes');
  const g = select(s);
  g.append('defs').append('marker').attr('id', 'arrow').attr('viewBox', '0 0 10 10').attr('refX', 9).attr('refY', 5)
    .attr('markerWidth', 6).attr('markerHeight', 6).attr('orient', 'auto-start-reverse')
    .append('path').attr('d', 'M0,0L10,5L0,10z').attr('fill', '#64748b');
  nodes.forEach((id) => {
    g.append('line').attr('x1', lane(id)).attr('x2', lane(id)).attr('y1', 24).attr('y2', H).attr('stroke', nodeColour(id)).attr('stroke-width', 2);
    g.append('text').attr('x', lane(id)).attr('y', 14).attr('text-anchor', 'middle').attr('data-node-menu', id).text(id === coord ? `${id} (coordinator)` : id);
  });
  evs.forEach((e, i) => {
    const y = 36 + i * rowH;
    const bad = /fail|error|timeout|noquorum/i.test(e.what);
    const request = REQUESTS.has(e.what);
    const reply = REPLIES.has(e.what);
    if (e.node !== coord && (request || reply)) {
      const [x1, y1, x2, y2] = request ? [lane(coord), y - 10, lane(e.node), y] : [lane(e.node), y - 10, lane(coord), y];
      g.append('line').attr('x1', x1).attr('y1', y1).attr('x2', x2).attr('y2', y2)
        .attr('stroke', bad ? '#dc2626' : '#64748b').attr('marker-end', 'url(#arrow)')
        .attr('stroke-dasharray', e.hint_for ? '5 4' : null);
    }
    g.append('circle').attr('cx', lane(e.node)).attr('cy', y).attr('r', 4.5).attr('fill', bad ? '#dc2626' : nodeColour(e.node));
    if (bad) g.append('text').attr('x', lane(e.node) + 7).attr('y', y + 4).attr('class', 'lost').text('✕');
    g.append('text').attr('x', LANES + 10).attr('y', y + 4).attr('class', 'small')
      .text(`+${((e.at_us - t0) / 1000).toFixed(2)} ms ${e.node} ${e.what}${e.hint_for ? ` (hint for ${e.hint_for})` : ''}${e.state ? ` (${e.state})` : ''}${e.got != null ? ` ${e.got}/${e.needed}` : ''}${e.version ? ` ${e.version}` : ''}${e.why ? `: ${e.why}` : ''}${e.outcome ? ` ${e.outcome}` : ''}`);
  });
  return h('div.trace#trace-lanes',
    h('p', `Trace ${trace.id}: ${trace.command} ${trace.key} via ${trace.coordinator} (${trace.path} path), ${trace.outcome}, ${((trace.duration_us || 0) / 1000).toFixed(2)} ms. Arrows are requests and answers (dashed: kept as a hint; red ✕: an error or no answer in time).`),
    s);
}

export default {
  id: 'messages',
  title: 'Messages',
  mount(root, s) {
    el = root;
    lastStore = s;
    svg = svgRoot(SIZE, SIZE, 'messages', 'messages-svg');
    info = h('div#msg-info');
    const speedSel = h('select#msg-speed', { on: { change: () => { speed = Number(speedSel.value); } } }, [1, 0.5, 0.1, 0.01].map((v) => h('option', { value: v, selected: v === speed }, `${v}×`)));
    const pause = h('button#msg-pause', { on: { click: () => { mode = mode === 'paused' ? 'play' : 'paused'; } } }, 'Pause / play');
    const step = h('button#msg-step', {
      title: 'Advance to the next message',
      on: {
        click: () => {
          const next = memo(lastStore).find((m) => m.recv > cursor + 1);
          mode = 'paused';
          if (next) cursor = next.recv;
          draw();
        },
      },
    }, 'Step');
    const replay = h('button#msg-replay', { on: { click: () => { cursor = Date.now() - REPLAY_MS; mode = 'play'; } } }, 'Replay the last minute');
    const traceNote = h('p.note#trace-note');
    fill(el, h('div.split', svg, h('div', h('div.toolbar', pause, step, speedSel, replay), info,
      h('p.note', 'Dots are messages: small grey a heartbeat received by the node the page follows, red a node\'s state change travelling to the node that saw it, orange a Redis state change, green a redistribution pass, purple a fault, blue a quorum request\'s fan-out and answers (from traces, drawn 1000× slower than they ran; light blue a write kept as a hint, red an error or a timeout). Space pauses. Each dot is drawn at least 0.4 s long so it can be seen.'),
      traceNote)));
    cursor = Date.now();
    mode = 'live';
    lastFrame = 0;
    raf = requestAnimationFrame(frame);
    const keys = (e) => { if (e.code === 'Space' && e.target === document.body) { e.preventDefault(); mode = mode === 'paused' ? 'play' : 'paused'; } };
    document.addEventListener('keydown', keys);
    this.keys = keys;
    const refresh = async () => {
      await Promise.all([loadTraces(), loadFaults()]);
      fill(traceNote, tracesAvailable ? `${traces.length} recent traces animated.` : 'Quorum traces: not available on this node yet (GET /api/traces); only cluster events are animated.');
    };
    refresh();
    timer = setInterval(refresh, 2000);
  },
  unmount() { cancelAnimationFrame(raf); clearInterval(timer); document.removeEventListener('keydown', this.keys); },
  update(s) { lastStore = s; },
};
