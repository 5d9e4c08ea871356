// The admin page with a 10-node cluster and 100 events a second published on cluster:events
// (the WebSocket path): every node shows up live, and the page keeps answering clicks quickly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSession, openSession, signIn } from './cluster.mjs';

const LONG = { timeout: 120000 };
let cluster;
let b;
let page;

before(async () => {
  ({ cluster, browser: b, page } = await openSession(10));
  await signIn(page);
}, LONG);

after(() => closeSession({ cluster, browser: b }));

/** In the page: from a click on a view's tab to the next frame after it is mounted (ms). */
const switchTo = (id) => page.evaluate((v) => new Promise((resolve) => {
  const t0 = performance.now();
  document.querySelector(`nav.tabs a[data-view=${v}]`).click();
  const wait = () => (document.querySelector(`main[data-view=${v}]`) ? requestAnimationFrame(() => resolve(Math.round(performance.now() - t0))) : setTimeout(wait, 5));
  wait();
}), id);

test('ten nodes and 100 events a second: live and responsive', LONG, async () => {
  await page.waitForFunction(() => document.querySelectorAll('#nodes-table tr[data-state=alive]').length === 10, null, LONG);
  await page.waitForSelector('#live-state[data-state=open]', LONG);
  const live = await page.getAttribute('#live-state', 'data-node');
  const i = cluster.nodes.findIndex((n) => n.id === live);
  const cli = spawn('redis-cli', ['-p', String(cluster.nodes[i].redis)], { stdio: ['pipe', 'ignore', 'ignore'] });
  const started = Date.now();
  let sent = 0;
  const feed = setInterval(() => {
    for (let k = 0; k < 10; k++, sent++) {
      const ev = { type: 'load_test', observer: live, node: `n${(sent % 10) + 1}`, from: 'a', to: 'b', reason: `event ${sent}`, at_ms: Date.now() };
      cli.stdin.write(`PUBLISH cluster:events '${JSON.stringify(ev)}'\n`);
    }
  }, 100);
  const delays = {};
  for (const id of ['overview', 'ring', 'events', 'messages', 'raft', 'nodes', 'overview', 'events']) {
    await new Promise((r) => setTimeout(r, 700));
    delays[id] = Math.max(delays[id] || 0, await switchTo(id));
  }
  // The busiest view stays open a while: frames keep coming.
  await switchTo('messages');
  const fps = await page.evaluate(() => new Promise((resolve) => {
    let n = 0;
    const t0 = performance.now();
    const tick = () => { n++; if (performance.now() - t0 < 2000) requestAnimationFrame(tick); else resolve(n / 2); };
    requestAnimationFrame(tick);
  }));
  clearInterval(feed);
  cli.stdin.end();
  const seconds = (Date.now() - started) / 1000;
  await switchTo('events');
  await page.waitForFunction(() => document.querySelectorAll('#event-list li[data-type=load_test]').length >= 200, null, LONG);
  console.log(`10 nodes, ${sent} events in ${seconds.toFixed(1)} s (${(sent / seconds).toFixed(0)}/s): view switches ${JSON.stringify(delays)} ms, messages view ${fps} frames/s`);
  assert.ok(sent / seconds > 80, `${sent / seconds} events/s`);
  for (const [id, ms] of Object.entries(delays)) assert.ok(ms < 500, `${id} took ${ms} ms`);
  assert.ok(fps >= 10, `${fps} frames/s`);
  assert.deepEqual(page.errors, []);
});
