// The admin page: sign-in with an API key, the frame (header, live status, view tabs) and the
// hash router that mounts one view at a time and tells it when the store changed.

import { ApiError, get, getKey, setKey } from './api.js';
import { connect, refreshCluster, store, subscribe, watchFrom } from './live.js';
import { installNodeMenu } from './menu.js';
import { fill, h, nodeChip } from './ui.js';
import overview from './views/overview.js';
import ring from './views/ring.js';
import data from './views/data.js';
import nodes from './views/nodes.js';
import consistency from './views/consistency.js';
import faults from './views/faults.js';
import recovery from './views/recovery.js';
import raft from './views/raft.js';
import events from './views/events.js';
import messages from './views/messages.js';
import scenarios from './views/scenarios.js';

const VIEWS = [overview, ring, data, nodes, consistency, faults, recovery, raft, events, messages, scenarios];
/** The keys that open the views, in their order. */
const KEYS = '1234567890-';
const app = document.getElementById('app');

function signIn(message) {
  const input = h('input#key', { type: 'password', placeholder: 'API key', autocomplete: 'current-password', required: true });
  const form = h('form.signin', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        setKey(input.value.trim());
        start();
      },
    },
  },
  h('h1', 'rcluster admin'),
  h('p', 'Sign in with an API key of the cluster config (api.keys). A read key sees everything and changes nothing; an admin key may also change the cluster.'),
  message && h('p.error', message),
  input,
  h('button', { type: 'submit' }, 'Sign in'));
  fill(app, form);
  input.focus();
}

async function start() {
  if (!getKey()) return signIn();
  try {
    store.whoami = await get('/api/whoami');
  } catch (e) {
    setKey('');
    return signIn(e instanceof ApiError && e.status === 401 ? 'That key is not known to the cluster.' : `Could not sign in: ${e.message}`);
  }
  await refreshCluster();
  frame();
  connect();
  setInterval(refreshCluster, 3000);
}

let current = null;
let main;
let liveBox;

function frame() {
  const w = store.whoami;
  const role = w.role === 'admin'
    ? h('span.role.admin#role', { title: 'This key may change the cluster: stop nodes, write data, change settings.' }, `admin key “${w.name}”`)
    : h('span.role.read#role', { title: 'This key sees everything and changes nothing: the buttons that change the cluster are disabled.' }, `read-only key “${w.name}”`);
  liveBox = h('span.live#live');
  const tabs = h('nav.tabs', VIEWS.map((v) => h('a', { href: `#/${v.id}`, 'data-view': v.id }, v.title)));
  main = h('main#view');
  fill(app,
    h('header',
      h('strong.brand', `rcluster · ${w.cluster}`),
      tabs,
      h('span.spacer'),
      liveBox,
      role,
      h('button.link', { title: 'Keyboard shortcuts (?)', on: { click: help } }, '?'),
      h('button.link', { on: { click: () => { setKey(''); location.reload(); } } }, 'Sign out')),
    main);
  document.body.classList.toggle('read-only', w.role !== 'admin');
  document.body.classList.toggle('presenter', localStorage.getItem('rc-presenter') === '1');
  installNodeMenu();
  document.addEventListener('keydown', shortcut);
  subscribe(update);
  window.addEventListener('hashchange', route);
  route();
}

/** Keyboard: 1-9, 0 and - open the views, p presenter mode (large type), ? this list. */
function shortcut(e) {
  if (e.target.closest('input, select, textarea') || e.ctrlKey || e.metaKey || e.altKey) return;
  const i = KEYS.indexOf(e.key);
  if (i >= 0 && VIEWS[i]) location.hash = `#/${VIEWS[i].id}`;
  else if (e.key === 'p') {
    const on = document.body.classList.toggle('presenter');
    localStorage.setItem('rc-presenter', on ? '1' : '0');
  } else if (e.key === '?') help();
}

function help() {
  const old = document.querySelector('.help');
  if (old) return old.remove();
  const sheet = h('div.help#help', { on: { click: () => sheet.remove() } },
    h('h3', 'Keyboard'),
    h('p', VIEWS.map((v, i) => [h('kbd', KEYS[i]), ` ${v.title}  `])),
    h('p', h('kbd', 'p'), ' presenter mode (large type) · ', h('kbd', 'Space'), ' pause or play the Messages view · ', h('kbd', 'Esc'), ' close a menu · ', h('kbd', '?'), ' this sheet'),
    h('p.note', 'Click any node (its name, its arc on the ring, its circle) for its actions. Status words explain themselves on hover.'));
  document.body.append(sheet);
}

function route() {
  const id = (location.hash.match(/^#\/([a-z-]+)/) || [])[1] || 'overview';
  const view = VIEWS.find((v) => v.id === id) || overview;
  if (current?.unmount) current.unmount();
  current = view;
  for (const a of document.querySelectorAll('nav.tabs a')) a.classList.toggle('active', a.dataset.view === view.id);
  fill(main);
  main.dataset.view = view.id;
  view.mount(main, store);
  update(store);
}

function update(s) {
  renderLive(s);
  current?.update?.(s);
}

let liveSig = '';
function renderLive(s) {
  const l = s.live;
  const sig = `${l.state}|${l.node}|${l.reason}|${(s.nodes || []).map((n) => n.id).join()}`;
  if (sig === liveSig) return;
  liveSig = sig;
  const choose = h('select#watch-from', {
    title: 'Whose view of the cluster the live stream shows',
    on: { change: (e) => watchFrom(e.target.value) },
  }, (s.nodes || []).map((n) => h('option', { value: n.id, selected: n.id === l.node }, n.id)));
  const word = l.state === 'open' ? 'live' : l.state === 'connecting' ? 'connecting' : 'reconnecting';
  const cls = l.state === 'open' ? 'ok' : l.state === 'connecting' ? 'warn' : 'bad';
  fill(liveBox,
    h(`span.dot.${cls}`),
    h('span#live-state', { 'data-state': l.state, 'data-node': l.node || '', title: l.reason || `The page follows node ${l.node}'s events and snapshots over a WebSocket.` }, `${word} from `),
    nodeChip(l.node || '?'),
    l.state !== 'open' && l.reason ? h('span.reason', ` (${l.reason})`) : null,
    ' ', choose);
}

start();
