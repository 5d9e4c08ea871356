// Events: the live stream, filterable by type and node, pausable. New events are added to the
// list as they come (the list is rebuilt only when a filter changes), so a busy stream stays
// cheap to show.

import { kinds } from '../live.js';
import { fill, fmtTime, h, nodeChip } from '../ui.js';

const SHOWN = 200;

export function eventLine(e) {
  const detail = e.reason || e.what || e.action || e.state || '';
  return h('li', { 'data-type': e.type, 'data-node': e.node || '' },
    h('time', fmtTime(e.at_ms || e._rx)),
    h(`span.etype.t-${String(e.type).replace(/[^a-z_]/g, '')}`, e.type),
    e.node ? nodeChip(e.node) : '',
    e.observer && e.observer !== e.node ? h('small', ` seen by ${e.observer}`) : '',
    e.from != null || e.to != null ? h('span', ` ${e.from ?? ''} → ${e.to ?? ''}`) : '',
    detail ? h('span.detail', ` ${detail}`) : '');
}

let list;
let paused = false;
let typeSel;
let nodeSel;
let text;
let rate;
let shownUpTo = 0;
let lastStore = null;

function matches(e) {
  const t = typeSel.value;
  const n = nodeSel.value;
  const q = text.value.trim().toLowerCase();
  if (t && e.type !== t) return false;
  if (n && e.node !== n && e.observer !== n) return false;
  return !q || JSON.stringify(e).toLowerCase().includes(q);
}

/** Rebuilds the list from the buffer (a filter changed). */
function rebuild(s) {
  const out = [];
  for (let i = s.events.length - 1; i >= 0 && out.length < SHOWN; i--) if (matches(s.events[i])) out.push(s.events[i]);
  const frag = document.createDocumentFragment();
  for (const e of out) frag.append(eventLine(e));
  list.replaceChildren(frag);
  shownUpTo = s.seq;
}

/** Adds the events that came since the last call, newest on top. */
function addNew(s) {
  const fresh = [];
  for (let i = s.events.length - 1; i >= 0 && s.events[i]._seq > shownUpTo; i--) if (matches(s.events[i])) fresh.push(s.events[i]);
  shownUpTo = s.seq;
  if (!fresh.length) return;
  const frag = document.createDocumentFragment();
  for (const e of fresh.slice(0, SHOWN)) frag.append(eventLine(e));
  list.prepend(frag);
  while (list.childElementCount > SHOWN) list.lastElementChild.remove();
}

function syncOptions(select, values) {
  const have = new Set([...select.options].map((o) => o.value));
  for (const v of values) if (!have.has(v)) select.append(h('option', { value: v }, v));
}

export default {
  id: 'events',
  title: 'Events',
  mount(root, s) {
    lastStore = s;
    const again = () => rebuild(lastStore);
    typeSel = h('select#event-type', { on: { change: again } }, h('option', { value: '' }, 'every type'));
    nodeSel = h('select#event-node', { on: { change: again } }, h('option', { value: '' }, 'every node'));
    text = h('input', { placeholder: 'text in the event', on: { input: again } });
    const pause = h('button#event-pause', { on: { click: () => { paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause'; if (!paused) again(); } } }, paused ? 'Resume' : 'Pause');
    rate = h('span#event-rate');
    list = h('ul.events#event-list');
    fill(root, h('p.note', `Every message published on cluster:events of the node the page follows, plus the page's own connection changes. The newest is on top (at most ${SHOWN} shown; the page keeps the last 5000).`), h('div.toolbar', typeSel, nodeSel, text, pause, rate), list);
    rebuild(s);
  },
  update(s) {
    lastStore = s;
    syncOptions(typeSel, [...kinds].sort());
    syncOptions(nodeSel, (s.nodes || []).map((n) => n.id));
    if (!paused) addNew(s);
    const now = Date.now();
    let recent = 0;
    for (let i = s.events.length - 1; i >= 0 && now - s.events[i]._rx < 10000; i--) recent++;
    rate.textContent = ` ${(recent / 10).toFixed(1)} events/s over the last 10 s${paused ? ' (paused)' : ''}`;
  },
};
