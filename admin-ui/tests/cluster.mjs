// The browser tests' harness: a real 3-node cluster started with the built `rcluster up` on free
// loopback ports (like tests/src), the system Chromium driven by playwright-core, and helpers.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const TARGET = process.env.RCLUSTER_TARGET || join(ROOT, 'target/debug');
export const ADMIN_KEY = 'ui-test-admin-key-0123456789';
export const READ_KEY = 'ui-test-read-key-0123456789';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** A loopback port that was free a moment ago (10000..32000, below the ephemeral range). */
const handed = new Set();
export async function freePort() {
  for (;;) {
    const port = 10000 + Math.floor(Math.random() * 22000);
    if (handed.has(port)) continue;
    const ok = await new Promise((res) => {
      const s = createServer();
      s.once('error', () => res(false));
      s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
    });
    if (ok) { handed.add(port); return port; }
  }
}

export class Cluster {
  static async start(count = 3, extraYaml = '') {
    const c = new Cluster();
    c.dir = mkdtempSync(join(tmpdir(), 'rc-ui-'));
    c.nodes = [];
    let list = '';
    for (let i = 1; i <= count; i++) {
      const n = { id: `n${i}`, redis: await freePort(), http: await freePort(), peer: await freePort() };
      c.nodes.push(n);
      list += `  - { id: ${n.id}, redis_port: ${n.redis}, http_port: ${n.http}, peer_port: ${n.peer} }\n`;
    }
    c.config = join(c.dir, 'cluster.yaml');
    writeFileSync(c.config, `cluster_name: uitest\ndata_dir: data\nredis_conf: ${join(ROOT, 'redis.conf')}\nredis_maxmemory_mb: 128\n`
      + `api:\n  keys:\n    - { name: ui-admin, key: ${ADMIN_KEY}, role: admin }\n    - { name: ui-read, key: ${READ_KEY}, role: read }\n  rate_per_s: 1000\n  burst: 2000\n${extraYaml}\nnodes:\n${list}`);
    c.up = spawn(join(TARGET, 'rcluster'), ['up', '--config', c.config, '--module', join(TARGET, 'librcluster_module.so')], { stdio: ['ignore', 'pipe', 'pipe'] });
    c.log = '';
    await new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`cluster not ready in 90 s:\n${c.log}`)), 90000);
      const on = (d) => { c.log += d; if (c.log.includes('cluster ready')) { clearTimeout(timer); res(); } };
      c.up.stdout.on('data', on);
      c.up.stderr.on('data', on);
      c.up.once('exit', (code) => { clearTimeout(timer); rej(new Error(`rcluster up exited ${code}:\n${c.log}`)); });
    });
    return c;
  }

  url(i = 0) { return `http://127.0.0.1:${this.nodes[i].http}/`; }

  async api(i, method, path, body, key = ADMIN_KEY) {
    const res = await fetch(`http://127.0.0.1:${this.nodes[i].http}${path}`, { method, headers: { 'X-API-Key': key, ...(body ? { 'Content-Type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, json, text };
  }

  /** `RC.LOCATE key` on node i's Redis (redis-cli, a client of its own). */
  locate(i, key) {
    const out = execFileSync('redis-cli', ['-p', String(this.nodes[i].redis), '--no-raw', 'RC.LOCATE', key], { encoding: 'utf8' });
    return [...out.matchAll(/1\) "([^"]+)"/g)].map((m) => m[1]);
  }

  /** The pid of node `id`'s node process (a child of `rcluster up` with `--id <id>`). */
  nodePid(id) {
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      try {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid !== this.up.pid) continue;
        const args = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
        const at = args.indexOf('--id');
        if (at >= 0 && args[at + 1] === id) return Number(p);
      } catch { /* gone */ }
    }
    return null;
  }

  /** Starts node `id`'s process again by itself (as `rcluster up` says to after it exited). */
  restartNode(id) {
    const child = spawn(join(TARGET, 'rcluster'), ['node', '--config', this.config, '--id', id, '--module', join(TARGET, 'librcluster_module.so')], { stdio: 'ignore', detached: true });
    this.extra = [...(this.extra || []), child];
    return child;
  }

  async stop() {
    for (const c of this.extra || []) { try { process.kill(-c.pid, 'SIGTERM'); } catch { /* gone */ } }
    if (this.up && this.up.exitCode == null) {
      const done = new Promise((res) => this.up.once('exit', res));
      this.up.kill('SIGTERM');
      await Promise.race([done, new Promise((r) => setTimeout(r, 30000))]);
      if (this.up.exitCode == null) this.up.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function browser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (./rc.sh deps)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** A page with console errors collected (a test asserts there were none). */
export async function openPage(b, url) {
  const context = await b.newContext({ viewport: { width: 1280, height: 860 }, deviceScaleFactor: 1, acceptDownloads: true, reducedMotion: 'reduce' });
  const page = await context.newPage();
  page.errors = [];
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(`${m.text()} (${m.location().url})`); });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  await page.goto(url);
  return page;
}

export async function signIn(page, key = ADMIN_KEY) {
  await page.fill('#key', key);
  await page.click('form.signin button');
  await page.waitForSelector('#role');
}

export const SHOTS = join(ROOT, 'docs/screenshots');

/** A test file's cluster of `count` nodes, the browser and a page on node 0 (not signed in). */
export async function openSession(count) {
  const cluster = await Cluster.start(count);
  const b = await browser();
  return { cluster, browser: b, page: await openPage(b, cluster.url(0)) };
}

/** Closes what openSession opened (whatever of it was opened). */
export async function closeSession({ cluster, browser: b }) {
  await b?.close();
  await cluster?.stop();
}
