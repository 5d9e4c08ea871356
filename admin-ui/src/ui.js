// Small DOM helpers, the fixed colour meanings and the one-sentence explanation of every status.

/** Builds an element: h('div.card#id', {attrs, on: {click}}, ...children). */
export function h(spec, props, ...children) {
  if (props == null || typeof props !== 'object' || props instanceof Node || Array.isArray(props)) {
    if (props != null) children.unshift(props);
    props = {};
  }
  const [, tag = 'div', rest = ''] = spec.match(/^([a-z0-9]*)(.*)$/i);
  const el = document.createElement(tag || 'div');
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'style' && typeof v === 'object') for (const [sk, sv] of Object.entries(v)) el.style.setProperty(sk.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), sv);
    else if (k in el && k !== 'list' && k !== 'form') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An empty SVG drawing of `width` × `height` user units (scaled by CSS). */
export function svgRoot(width, height, cls, id) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', cls);
  if (id) svg.id = id;
  return svg;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Each node keeps one colour in every view (by its place among the sorted node ids). */
const NODE_COLOURS = ['#3b82f6', '#f97316', '#10b981', '#a855f7', '#ec4899', '#14b8a6', '#eab308', '#6366f1', '#84cc16', '#ef4444', '#0ea5e9', '#d946ef'];
let nodeOrder = [];
export function setNodeOrder(ids) {
  const sorted = [...ids].sort();
  if (sorted.join() !== nodeOrder.join()) nodeOrder = sorted;
}
export function nodeColour(id) {
  let i = nodeOrder.indexOf(id);
  if (i < 0) { nodeOrder = [...nodeOrder, id].sort(); i = nodeOrder.indexOf(id); }
  return NODE_COLOURS[i % NODE_COLOURS.length];
}

/** Raft terms cycle through their own palette (RaftScope's idea). */
const TERM_COLOURS = ['#fde68a', '#bfdbfe', '#bbf7d0', '#fecaca', '#ddd6fe', '#fbcfe8'];
export const termColour = (term) => TERM_COLOURS[Number(term || 0) % TERM_COLOURS.length];

/** Status words: a colour class, a sentence saying what it means, and what to do. */
export const STATUS = {
  alive: ['ok', 'Heartbeats arrive on time and its Redis answers.', 'Nothing to do.'],
  self: ['ok', 'The node that answered this request.', 'Nothing to do.'],
  up: ['ok', 'Its Redis answers.', 'Nothing to do.'],
  suspect: ['warn', 'Heartbeats are late: the failure detector (phi) is unsure whether it is down.', 'Watch it; if it stays suspect, check its process and network.'],
  down: ['bad', 'No heartbeat for too long, or its Redis does not answer: writes for it become hints and reads use the other replicas.', 'Start it (Nodes), or look at its log in data/<id>/.'],
  unknown: ['idle', 'Not heard from yet (it may just have started).', 'Wait a few heartbeats.'],
  running: ['ok', 'Its Redis runs.', 'Nothing to do.'],
  stopped: ['bad', 'Its Redis was stopped through the API and stays down until started.', 'Start it from the Nodes view.'],
  starting: ['warn', 'Its Redis is starting (loading its data).', 'Wait.'],
  backoff: ['warn', 'Its Redis exited and will be started again after a pause.', 'Look at the reason; the supervisor retries by itself.'],
  cannot_start: ['bad', 'Its Redis cannot start as configured (port held, bad config).', 'Fix the cause named in the reason, then start it.'],
  leader: ['ok', 'Leads Raft: membership and settings changes go through it.', 'Nothing to do.'],
  follower: ['idle', 'Follows the Raft leader.', 'Nothing to do.'],
  candidate: ['warn', 'Asks for votes: an election is running.', 'Wait; it settles within a few election timeouts.'],
};

export function statusOf(word) {
  return STATUS[word] || ['idle', `State "${word}".`, ''];
}

/** A status badge with its explanation as a tooltip. */
export function badge(word, extra = '') {
  const w = word == null ? 'unknown' : String(word);
  const [cls, means, todo] = statusOf(w);
  return h(`span.badge.${cls}`, { title: `${means}${todo ? ` What to do: ${todo}` : ''}${extra ? ` ${extra}` : ''}`, 'data-status': w }, w);
}

/** A node's name in its colour; clicking it opens the node's menu (acting on the object). */
export function nodeChip(id) {
  return h('span.node-chip', { style: { '--c': nodeColour(id) }, 'data-node': id, 'data-node-menu': id, title: `${id}: click for its actions` }, id);
}

export function fmtBytes(n) {
  if (n == null) return '—';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v >= 10 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${u[i]}`;
}

export function fmtAge(ms) {
  if (ms == null) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

export const fmtTime = (ms) => (ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) + `.${String(ms % 1000).padStart(3, '0')}` : '—');

/** A number that is greyed when zero (zero counts draw no attention). */
export function count(n, level = 'warn') {
  const v = Number(n || 0);
  return h(`span.count${v ? `.${level}` : '.zero'}`, String(v));
}

/** A short notice that goes away by itself. */
export function toast(text, kind = 'info') {
  let tray = document.getElementById('toasts');
  if (!tray) { tray = h('div#toasts'); document.body.append(tray); }
  const t = h(`div.toast.${kind}`, { role: 'status' }, text);
  tray.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

/** "not available on this node yet": the API this view needs answered 404. */
export function notAvailable(what) {
  return h('div.unavailable', { 'data-unavailable': what }, h('strong', `${what}: not available on this node yet.`), ' This node\'s API does not have this route (the feature lands with another part of the project); nothing is shown rather than made-up data.');
}
