// Browser tests of the Scenarios view and the Faults view's checker against a real 3-node
// cluster: `normal` run in short mode from the page to its verdict, narrated live; a refused run
// shows the API's 409 message; trade-offs' table drawn as a chart; a read key sees the runs and
// cannot start one; a short checker run (partition-halves) from the Faults view to its report.
// Saves docs/screenshots/scenarios.png and faults.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { closeSession, openPage, openSession, signIn, SHOTS, READ_KEY } from './cluster.mjs';

const LONG = { timeout: 240000 };
let cluster;
let b;
let page;

before(async () => {
  ({ cluster, browser: b, page } = await openSession(3));
  await signIn(page);
  await page.waitForSelector('#live-state[data-state=open]', { timeout: 60000 });
  mkdirSync(SHOTS, { recursive: true });
});

after(() => closeSession({ cluster, browser: b }));

const view = async (p, id) => {
  await p.click(`nav.tabs a[data-view=${id}]`);
  await p.waitForSelector(`main[data-view=${id}]`);
};

/** Every node alive as node 0 sees it (a scenario refuses to start otherwise). */
async function healthy() {
  for (let i = 0; i < 120; i++) {
    const nodes = (await cluster.api(0, 'GET', '/api/nodes')).json?.nodes || [];
    const faults = (await cluster.api(0, 'GET', '/api/faults')).json?.faults || [];
    if (nodes.length === 3 && nodes.every((n) => n.state === 'alive' && n.redis_up) && !faults.length) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('the cluster did not become healthy');
}

test('the view lists the five scenarios, each with a sentence and a Run button', async () => {
  await view(page, 'scenarios');
  await page.waitForSelector('#demo-list');
  const names = await page.$$eval('#demo-list tr', (rows) => rows.map((r) => r.dataset.demo));
  assert.deepEqual(names, ['normal', 'node-failure', 'scaling', 'resources', 'trade-offs']);
  for (const n of names) {
    assert.ok((await page.textContent(`#demo-list tr[data-demo=${n}] td.small`)).length > 30);
    assert.equal(await page.isEnabled(`#demo-list button[data-run=${n}]`), true);
  }
  assert.equal(await page.isChecked('#demo-short'), true);
});

test('a run the API refuses shows its 409 message', LONG, async () => {
  await healthy();
  // An active fault makes the cluster "not healthy" for a scenario.
  const f = await cluster.api(0, 'POST', '/api/faults', { kind: 'latency', targets: ['n3'], ms: 1, jitter_ms: 0, ttl_ms: 60000 });
  assert.equal(f.status, 201, f.text);
  await view(page, 'scenarios');
  await page.click('#demo-list button[data-run=normal]');
  await page.waitForSelector('#demo-refused');
  const text = await page.textContent('#demo-refused');
  const direct = await cluster.api(0, 'POST', '/api/demos', { name: 'normal', short: true });
  assert.equal(direct.status, 409);
  assert.ok(text.includes(direct.json.error.message), `${text} vs ${direct.text}`);
  assert.equal((await cluster.api(0, 'GET', '/api/demos')).json.demos.length, 0);
  assert.equal((await cluster.api(0, 'DELETE', '/api/faults')).status < 300, true);
  // The browser logs the refused request itself; nothing else may be there.
  assert.deepEqual(page.errors.filter((e) => !/409 \(Conflict\)/.test(e)), []);
  page.errors = [];
});

test('normal, run in short mode from the page, is narrated step by step and ends with its verdict', LONG, async () => {
  await healthy();
  await view(page, 'scenarios');
  await page.click('#demo-list button[data-run=normal]');
  await page.waitForSelector('#demo-run[data-name=normal]', { timeout: 20000 });
  const id = await page.getAttribute('#demo-run', 'data-id');
  // While it runs: the other Run buttons wait, the steps show, lines arrive.
  await page.waitForSelector('#demo-run[data-state=running] #demo-stop', { timeout: 20000 }).catch(() => {});
  await page.waitForSelector('#demo-narration li', { timeout: 60000 });
  await page.waitForSelector('#demo-verdict[data-state=passed]', { timeout: 200000 });
  const api = (await cluster.api(0, 'GET', `/api/demos/${id}`)).json;
  assert.equal(api.state, 'passed');
  assert.equal(api.verdict.passed, true);
  // Every line the run said is on the page, and each step was shown.
  const lines = await page.$$eval('#demo-narration li span', (s) => s.map((x) => x.textContent));
  for (const l of api.narration) assert.ok(lines.includes(l.text), `missing line: ${l.text}`);
  assert.ok(lines.some((l) => l.includes('[3/3]')), lines.join('\n'));
  assert.match(await page.textContent('#demo-step'), /step 3\/3/);
  // The figures of the verdict are shown.
  assert.match(await page.textContent('#demo-verdict'), /stale_replica_repaired/);
  // The narration also came over the WebSocket: "demo" events reached the page's event list.
  await view(page, 'events');
  await page.waitForSelector('#event-list .etype.t-demo', { timeout: 10000 });
  assert.deepEqual(page.errors, []);
});

test('trade-offs in short mode ends with its table drawn as a chart', LONG, async () => {
  await healthy();
  await view(page, 'scenarios');
  await page.click('#demo-list button[data-run=trade-offs]');
  await page.waitForSelector('#demo-run[data-name=trade-offs]', { timeout: 20000 });
  await page.waitForSelector('#demo-verdict:not([data-state=running])', { timeout: 220000 });
  const id = await page.getAttribute('#demo-run', 'data-id');
  const api = (await cluster.api(0, 'GET', `/api/demos/${id}`)).json;
  assert.ok(api.verdict, `trade-offs ended ${api.state} without a verdict: ${JSON.stringify(api).slice(0, 3000)}`);
  const settings = await page.$$eval('#demo-chart g.setting', (g) => g.map((x) => x.dataset.setting));
  assert.deepEqual(settings, api.verdict.rows.map((r) => r.setting));
  assert.equal(await page.$$eval('#demo-chart rect.ops', (r) => r.length), 4);
  assert.equal(await page.$$eval('#demo-table tbody tr', (r) => r.length), 4);
  await page.evaluate(() => document.getElementById('toasts')?.remove());
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(SHOTS, 'scenarios.png'), fullPage: true });
});

test('a read key sees the runs and cannot start or stop one', LONG, async () => {
  // The runs are node 0's (each node lists the runs it started).
  const reader = await openPage(b, cluster.url(0));
  await signIn(reader, READ_KEY);
  await view(reader, 'scenarios');
  await reader.waitForSelector('#demo-run[data-name]');
  const pe = await reader.$eval('#demo-list button[data-run=normal]', (el) => getComputedStyle(el).pointerEvents);
  assert.equal(pe, 'none');
  const status = await reader.evaluate(async () => {
    const k = sessionStorage.getItem('rc-key');
    return fetch('/api/demos', { method: 'POST', headers: { 'X-API-Key': k, 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'normal', short: true }) }).then((r) => r.status);
  });
  assert.equal(status, 403);
  assert.equal((await cluster.api(0, 'GET', '/api/demos')).json.demos.filter((d) => d.state === 'running').length, 0);
  assert.deepEqual(reader.errors.filter((e) => !/403/.test(e)), []);
  await reader.context().close();
});

test('a run is stopped from the page (a read key cannot), and ends stopped with the cluster restored', LONG, async () => {
  await healthy();
  const before = (await cluster.api(0, 'GET', '/api/cluster')).json;
  await view(page, 'scenarios');
  await page.click('#demo-list button[data-run=resources]');
  await page.waitForSelector('#demo-run[data-name=resources][data-state=running] #demo-stop', { timeout: 20000 });
  // While it runs the Run buttons wait, and a read key's Stop takes no clicks.
  assert.equal(await page.isDisabled('#demo-list button[data-run=normal]'), true);
  const reader = await openPage(b, cluster.url(0));
  await signIn(reader, READ_KEY);
  await view(reader, 'scenarios');
  await reader.waitForSelector('#demo-run[data-name=resources] #demo-stop');
  assert.equal(await reader.$eval('#demo-stop', (el) => getComputedStyle(el).pointerEvents), 'none');
  await reader.context().close();
  await page.waitForSelector('#demo-narration li');
  await page.click('#demo-stop');
  await page.waitForSelector('#demo-run[data-name=resources][data-state=stopped] #demo-verdict[data-state=stopped]', { timeout: 120000 });
  const after = (await cluster.api(0, 'GET', '/api/cluster')).json;
  assert.deepEqual(after.quorum, before.quorum);
  assert.equal((await cluster.api(0, 'GET', '/api/faults')).json.faults.length, 0);
  // The node it filled has its maxmemory back (128 MiB, as configured), on every node.
  for (const n of cluster.nodes) {
    const out = execFileSync('redis-cli', ['-p', String(n.redis), 'CONFIG', 'GET', 'maxmemory'], { encoding: 'utf8' });
    assert.equal(out.trim().split('\n')[1], String(128 * 1024 * 1024), `${n.id}: ${out}`);
  }
  assert.deepEqual(page.errors, []);
});

test('a short checker run (partition-halves) from the Faults view ends with its report', LONG, async () => {
  await healthy();
  await view(page, 'faults');
  await page.waitForSelector('#check-run:enabled');
  await page.selectOption('#check-schedule', 'partition-halves');
  await page.fill('#check-seconds', '6');
  // trade-offs ran checks of its own: this run is the one that was not there before.
  const before = new Set(((await cluster.api(0, 'GET', '/api/checks')).json.checks || []).map((c) => c.id));
  await page.click('#check-run');
  let id;
  for (let i = 0; i < 100 && !id; i++) {
    id = ((await cluster.api(0, 'GET', '/api/checks')).json.checks || []).map((c) => c.id).find((c) => !before.has(c));
    if (!id) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(id, 'the page started a check');
  await page.waitForSelector(`#checks .check[data-check="${id}"][data-state=running] progress`, { timeout: 20000 });
  await page.waitForSelector(`#checks .check[data-check="${id}"]:not([data-state=running]) .check-report`, { timeout: 200000 });
  const api = (await cluster.api(0, 'GET', `/api/checks/${id}`)).json;
  assert.equal(api.state, 'passed', JSON.stringify(api.report || api.error));
  const shown = `#checks .check[data-check="${id}"]`;
  assert.equal(await page.textContent(`${shown} .check-lost`), String(api.report.lost.length));
  assert.match(await page.textContent(`${shown} .check-report`), /PASSED/);
  const windows = await page.$$eval(`${shown} table.check-windows tbody tr`, (r) => r.length);
  assert.equal(windows, api.report.unavailability.length);
  assert.ok(windows > 0, 'partition-halves opens at least one fault window');
  await page.evaluate(() => document.getElementById('toasts')?.remove());
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(SHOTS, 'faults.png'), fullPage: true });
  assert.deepEqual(page.errors, []);
});
