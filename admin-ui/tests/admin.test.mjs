// Browser tests of the admin page against a real 3-node cluster, in the system Chromium: sign-in,
// every view live without console errors (screenshots into docs/screenshots/), stopping and
// starting a node, a 20 MB upload and byte-identical download, the ring's key lookup against
// RC.LOCATE, faults, a read key that changes nothing, the WebSocket's reconnection, first-load
// bytes (responsiveness with 10 nodes: scale.test.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Cluster, browser, openPage, signIn, SHOTS, READ_KEY } from './cluster.mjs';

const VIEWS = ['overview', 'ring', 'data', 'nodes', 'consistency', 'faults', 'recovery', 'raft', 'events', 'messages', 'scenarios'];
const LONG = { timeout: 60000 };
let cluster;
let b;
let page;

before(async () => {
  cluster = await Cluster.start(3);
  b = await browser();
  page = await openPage(b, cluster.url(0));
});

after(async () => {
  await b?.close();
  await cluster?.stop();
});

const view = async (id) => {
  await page.click(`nav.tabs a[data-view=${id}]`);
  await page.waitForSelector(`main[data-view=${id}]`);
};

test('signs in and says which role the key has', async () => {
  await signIn(page);
  assert.match(await page.textContent('#role'), /admin key/);
  await page.waitForSelector('#live-state[data-state=open]', LONG);
});

test('every view renders with live data and no console errors', async () => {
  // Live data: the snapshot rows of all three nodes, alive.
  await page.waitForFunction(() => document.querySelectorAll('#nodes-table tr[data-state=alive]').length === 3, null, LONG);
  for (const id of VIEWS) {
    await view(id);
    if (id === 'ring') await page.waitForSelector('#ring-svg path.own', LONG);
    if (id === 'nodes') await page.waitForSelector('#nodes-actions tr[data-node=n3]', LONG);
    if (id === 'raft') await page.waitForSelector('.server[data-node=n1]', LONG);
    if (id === 'events') await page.waitForSelector('#event-list li', LONG);
    if (id === 'messages') await page.waitForSelector('#messages-svg g.srv', LONG);
    if (id === 'faults') await page.waitForSelector('#faults > *', LONG);
    if (id === 'scenarios') await page.waitForSelector('#demo-list tr[data-demo=trade-offs]', LONG);
    const text = await page.textContent('main');
    assert.ok(text.trim().length > 40, `${id} is empty`);
  }
  assert.deepEqual(page.errors, []);
});

test('a key on the ring has the same preference list as RC.LOCATE', async () => {
  await cluster.api(0, 'PUT', '/api/kv/user:42', null);
  await view('ring');
  await page.fill('#locate-key', 'user:42');
  await page.click('#locate-form button');
  await page.waitForSelector('#locate-table tbody tr');
  const shown = await page.$$eval('#locate-table tbody tr', (rows) => rows.map((r) => r.dataset.node));
  assert.deepEqual(shown, cluster.locate(0, 'user:42'));
  assert.equal(shown.length, 3);
});

test('the ring previews what a change would move, and a drawn node opens its actions', LONG, async () => {
  await view('ring');
  await page.selectOption('#preview-remove', 'n3');
  await page.click('#preview-form button');
  const share = await page.textContent('#preview-share');
  const api = (await cluster.api(0, 'GET', '/api/ring?without=n3')).json;
  assert.match(share, new RegExp(`^${(api.change.moving_share * 100).toFixed(1)}%`));
  assert.ok(await page.$$eval('#ring-svg path.moving', (p) => p.length) > 0);
  // Acting on the drawn object: an arc of n2 opens n2's menu.
  await page.dispatchEvent('#ring-svg path.own[data-node-menu=n2]', 'click');
  await page.waitForSelector('#node-menu[data-node=n2] button[data-action=stop]');
  await page.keyboard.press('Escape');
  assert.equal(await page.$('#node-menu'), null);
});

test('keys are written and read from the page, with the request drawn as lanes where traces exist', LONG, async () => {
  await view('data');
  await page.fill('#kv-key', 'page-key');
  await page.fill('#kv-value', 'hello');
  await page.selectOption('#kv-w', '3');
  await page.click('#kv-set');
  await page.waitForSelector('#kv-result[data-outcome=ok]', LONG);
  const traced = (await cluster.api(0, 'GET', '/api/traces')).status === 200;
  if (traced) {
    await page.waitForSelector('#trace-lanes svg circle', LONG);
    // W=3: the coordinator's fan-out reaches both other replicas, and their acks come back.
    const text = await page.textContent('#trace-lanes');
    for (const n of ['n1', 'n2', 'n3']) assert.ok(text.includes(n), text);
  }
  await page.click('#kv-get');
  await page.waitForFunction(() => /“hello”/.test(document.querySelector('#kv-result')?.textContent || ''), null, LONG);
  assert.equal((await cluster.api(1, 'GET', '/api/kv/page-key')).text, 'hello');
});

test('uploads 20 MB with the progress bar at 100% and downloads it byte-identical', LONG, async () => {
  const bytes = randomBytes(20 << 20);
  const file = join(tmpdir(), `rc-ui-upload-${process.pid}.bin`);
  writeFileSync(file, bytes);
  await view('data');
  await page.setInputFiles('#file-input', file);
  await page.click('#upload-btn');
  const name = file.split('/').pop();
  await page.waitForSelector(`.transfer[data-kind=upload][data-state=done]`, LONG);
  assert.equal(await page.getAttribute('.transfer[data-kind=upload]', 'data-percent'), '100');
  await page.waitForSelector(`#files-table tr[data-file="${name}"]`, LONG);
  const [download] = await Promise.all([
    page.waitForEvent('download', LONG),
    page.click(`#files-table tr[data-file="${name}"] button:has-text("Download")`),
  ]);
  const saved = await download.path();
  const sha = (buf) => createHash('sha256').update(buf).digest('hex');
  assert.equal(sha(readFileSync(saved)), sha(bytes));
  // Its 20 chunks on the ring, each held on all three preference nodes.
  await view('ring');
  await page.waitForSelector(`#placement-file option:has-text("${name}")`, { state: 'attached', ...LONG });
  const id = await page.$eval('#placement-file', (sel, n) => [...sel.options].find((o) => o.textContent.startsWith(n)).value, name);
  await page.selectOption('#placement-file', id);
  await page.waitForSelector('#chunk-strip .chunk', LONG);
  assert.equal(await page.$$eval('#chunk-strip .chunk', (c) => c.length), 20);
  assert.equal(await page.$$eval('#chunk-strip .chunk.short', (c) => c.length), 0);
});

test('stopping a node from the page marks it down within three heartbeats, then starts it', LONG, async () => {
  await view('nodes');
  page.once('dialog', (d) => d.accept());
  await page.click('#nodes-actions tr[data-node=n2] button[data-action=stop]');
  // Three heartbeats of 1 s; the wait itself is generous (a loaded CI machine), the DOM change is what counts.
  await page.waitForSelector('#nodes-actions tr[data-node=n2][data-state=down]', { timeout: 30000 });
  await page.click('#nodes-actions tr[data-node=n2] button[data-action=start]');
  await page.waitForSelector('#nodes-actions tr[data-node=n2][data-state=alive]', { timeout: 45000 });
});

test('faults: a partition is injected and cleared (or the view says the API is not there yet)', LONG, async () => {
  await view('faults');
  await page.waitForSelector('#faults > *', LONG);
  const probe = await cluster.api(0, 'GET', '/api/faults');
  if (probe.status === 404) {
    await page.waitForSelector('#faults [data-unavailable]');
    return;
  }
  await page.selectOption('#fault-kind', 'partition');
  await page.check('input[name=fault-target][value=n3]');
  await page.fill('#fault-ttl', '60');
  await page.click('#fault-inject');
  await page.waitForSelector('#faults-active .chip[data-kind=partition]', LONG);
  await page.click('#faults-reset');
  await page.waitForSelector('#faults-none', LONG);
  const after = await cluster.api(0, 'GET', '/api/faults');
  assert.deepEqual(after.json.faults, []);
});

test('a read key sees everything and changes nothing', LONG, async () => {
  const reader = await openPage(b, cluster.url(1));
  await signIn(reader, READ_KEY);
  assert.match(await reader.textContent('#role'), /read-only/);
  await reader.click('nav.tabs a[data-view=nodes]');
  await reader.waitForSelector('#nodes-actions tr[data-node=n1]', LONG);
  // The buttons that change things do not take clicks…
  const pe = await reader.$eval('#nodes-actions tr[data-node=n1] button[data-action=stop]', (el) => getComputedStyle(el).pointerEvents);
  assert.equal(pe, 'none');
  // …and the API refuses the key anyway.
  const statuses = await reader.evaluate(async () => {
    const k = sessionStorage.getItem('rc-key');
    const call = (m, p, body) => fetch(p, { method: m, headers: { 'X-API-Key': k, 'Content-Type': 'application/json' }, body }).then((r) => r.status);
    return [
      await call('POST', '/api/nodes/n1/stop'),
      await call('PUT', '/api/kv/ro-probe', 'x'),
      await call('PUT', '/api/cluster/quorum', JSON.stringify({ n: 3, w: 1, r: 1 })),
    ];
  });
  assert.deepEqual(statuses, [403, 403, 403]);
  const n1 = (await cluster.api(0, 'GET', '/api/nodes')).json.nodes.find((n) => n.id === 'n1');
  assert.equal(n1.redis_up, true);
  assert.equal((await cluster.api(0, 'GET', '/api/kv/ro-probe')).status, 404);
  assert.deepEqual(reader.errors.filter((e) => !/403/.test(e)), []);
  await reader.context().close();
});

test('the WebSocket reconnects by itself when its node goes away and comes back', LONG, async () => {
  await view('overview');
  await page.selectOption('#watch-from', 'n2');
  await page.waitForSelector('#live-state[data-state=open][data-node=n2]', LONG);
  const pid = cluster.nodePid('n2');
  assert.ok(pid, 'n2 node process found');
  process.kill(pid, 'SIGTERM');
  // Its node is gone: the page follows another node.
  await page.waitForFunction(() => {
    const s = document.querySelector('#live-state');
    return s && s.dataset.state === 'open' && s.dataset.node !== 'n2';
  }, null, { timeout: 45000 });
  cluster.restartNode('n2');
  await page.selectOption('#watch-from', 'n2');
  await page.waitForSelector('#live-state[data-state=open][data-node=n2]', { timeout: 60000 });
  // While n2 was gone the browser logged its refused connections; nothing else may be there.
  const refused = /WebSocket connection to .* failed/;
  assert.deepEqual(page.errors.filter((e) => !refused.test(e)), []);
  page.errors = [];
});

test('a screenshot of each view, after all of the above, into docs/screenshots/', LONG, async () => {
  mkdirSync(SHOTS, { recursive: true });
  // Seen from the page's own node again, once every node is back alive there.
  await page.selectOption('#watch-from', 'n1');
  await page.waitForSelector('#live-state[data-state=open][data-node=n1]', LONG);
  await view('overview');
  await page.waitForFunction(() => document.querySelectorAll('#nodes-table tr[data-state=alive]').length === 3, null, LONG);
  await page.evaluate(() => document.getElementById('toasts')?.remove());
  for (const id of VIEWS) {
    // faults.png shows a checker's report, scenarios.png a verdict: scenarios.test.mjs takes them.
    if (id === 'faults' || id === 'scenarios') continue;
    await view(id);
    if (id === 'ring') await page.waitForSelector('#ring-svg path.own', LONG);
    if (id === 'messages') await page.waitForTimeout(1500);
    else await page.waitForTimeout(300);
    await page.screenshot({ path: join(SHOTS, `${id}.png`) });
  }
});

test('first load is small', LONG, async () => {
  // Every byte the browser received for a fresh page (compressed as sent).
  const fresh = await b.newContext();
  const p = await fresh.newPage();
  const cdp = await fresh.newCDPSession(p);
  await cdp.send('Network.enable');
  let bytes = 0;
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; });
  await p.goto(cluster.url(0));
  await p.waitForSelector('#key');
  await fresh.close();
  console.log(`first load: ${bytes} bytes`);
  assert.ok(bytes < 100000, `first load ${bytes} bytes`);
});
