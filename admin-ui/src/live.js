// The one event model: a WebSocket to GET /api/events feeds a bounded buffer of every event
// and snapshot the page saw; views read the store and are told (at most a few times a second)
// when it changed. The socket reconnects by itself, to another node when its node goes away.

import { get, getKey } from './api.js';
import { setNodeOrder } from './ui.js';

const MAX_EVENTS = 5000;
const MAX_SNAPSHOTS = 900;
const NOTIFY_EVERY_MS = 200;

export const store = {
  whoami: null,
  cluster: null,
  nodes: [],
  observer: null,
  heartbeatMs: 1000,
  events: [],
  snapshots: [],
  seq: 0,
  live: { node: null, url: null, state: 'idle', reason: '', since: 0, moves: 0 },
  /** The node whose stream the page wants (null: the node that served the page). */
  preferred: null,
};

const listeners = new Set();
let pending = null;
let lastNotify = 0;
export function subscribe(fn) { listeners.add(fn); return () => listeners.delete(fn); }
export function changed() {
  if (pending) return;
  const wait = Math.max(0, NOTIFY_EVERY_MS - (performance.now() - lastNotify));
  pending = setTimeout(() => {
    pending = null;
    lastNotify = performance.now();
    for (const fn of listeners) {
      try { fn(store); } catch (e) { console.error(e); }
    }
  }, wait);
}

/** Every event kind seen so far (for the filters). */
export const kinds = new Set();

function addEvent(ev) {
  ev._seq = ++store.seq;
  ev._rx = Date.now();
  ev._from = store.live.node;
  kinds.add(ev.type || 'unknown');
  store.events.push(ev);
  if (store.events.length > MAX_EVENTS) store.events.splice(0, store.events.length - MAX_EVENTS);
}

function addSnapshot(s) {
  store.nodes = s.nodes || [];
  store.observer = s.observer;
  store.heartbeatMs = s.heartbeat_ms || store.heartbeatMs;
  setNodeOrder(store.nodes.map((n) => n.id));
  store.snapshots.push({
    at: s.at_ms,
    observer: s.observer,
    rows: store.nodes.map((n) => ({ id: n.id, self: n.is_self, hb: n.last_heartbeat_age_ms, state: n.state, role: n.raft_role, term: n.raft_term, commit: n.raft_commit_index, drift: n.drift_ms, phi: n.phi, redis_up: n.redis_up, redistribution: n.redistribution })),
  });
  if (store.snapshots.length > MAX_SNAPSHOTS) store.snapshots.splice(0, store.snapshots.length - MAX_SNAPSHOTS);
}

/** Refreshes the cluster view (settings, Raft, time) from the page's node. */
export async function refreshCluster() {
  try {
    store.cluster = await get('/api/cluster');
    if (!store.nodes.length) { store.nodes = store.cluster.nodes; setNodeOrder(store.nodes.map((n) => n.id)); }
    changed();
  } catch (e) {
    store.clusterError = e.message;
  }
}

let socket = null;
let retryTimer = null;
let openedOnce = false;

function urlFor(node) {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const key = encodeURIComponent(getKey());
  if (!node || node.is_self_origin) return `${proto}://${location.host}/api/events?key=${key}`;
  return `${proto}://${node.host}:${node.http_port}/api/events?key=${key}`;
}

/** The nodes to try, the wanted one first, then the others in order. */
function candidates() {
  const known = store.nodes.length ? store.nodes : store.cluster?.nodes || [];
  const origin = { id: store.whoami?.observer, is_self_origin: true };
  const wanted = store.preferred ? known.find((n) => n.id === store.preferred) : origin;
  const rest = known.filter((n) => n.id !== wanted?.id);
  return [wanted || origin, ...rest];
}

let attempt = 0;

export function connect(reset = true) {
  if (reset) attempt = 0;
  clearTimeout(retryTimer);
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  const list = candidates();
  // The wanted node twice, then each other node in turn.
  const target = attempt < 2 ? list[0] : list[(attempt - 1) % list.length] || list[0];
  const url = urlFor(target);
  store.live = { ...store.live, node: target?.id || '?', url, state: 'connecting', since: Date.now() };
  changed();
  let ws;
  try { ws = new WebSocket(url); } catch (e) { scheduleRetry(e.message); return; }
  socket = ws;
  let opened = false;
  const giveUp = setTimeout(() => { if (!opened) ws.close(); }, 4000);
  ws.onopen = () => {
    opened = true;
    clearTimeout(giveUp);
    if (openedOnce && attempt > 0) store.live.moves++;
    openedOnce = true;
    attempt = 0;
    store.live = { ...store.live, state: 'open', reason: '', since: Date.now() };
    addEvent({ type: 'page', what: 'connected', node: target?.id, at_ms: Date.now(), reason: `live stream from ${target?.id}` });
    changed();
  };
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch { return; }
    if (ev.type === 'snapshot') addSnapshot(ev);
    else addEvent(ev);
    changed();
  };
  ws.onclose = (e) => {
    clearTimeout(giveUp);
    if (socket !== ws) return;
    socket = null;
    const why = e.code === 1013 ? 'the page fell behind the stream' : opened ? `the stream from ${target?.id} ended` : `${target?.id} does not answer`;
    if (opened) addEvent({ type: 'page', what: 'disconnected', node: target?.id, at_ms: Date.now(), reason: why });
    scheduleRetry(why);
  };
}

function scheduleRetry(reason) {
  attempt++;
  store.live = { ...store.live, state: 'lost', reason, since: Date.now() };
  changed();
  retryTimer = setTimeout(() => connect(false), Math.min(1000 * attempt, 3000));
}

/** Watch the cluster from another node's point of view. */
export function watchFrom(id) {
  store.preferred = id === store.whoami?.observer ? null : id;
  connect();
}

export function disconnect() {
  clearTimeout(retryTimer);
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
}
