// Data: get, set and delete keys with a chosen W and R; upload files with a progress bar and
// speed (XHR upload progress), download them with progress, list and delete them. Each result
// shows the request's trace as lanes when the node records traces (X-RC-Trace).

import { api, ApiError, getKey, hasRoute, optional, transfer } from '../api.js';
import { fill, fmtBytes, fmtTime, h, toast } from '../ui.js';
import { traceLanes } from './messages.js';

let el;
let kvOut;
let tray;
let fileList;
let quorumN = 3;

function quorumSelect(id, label, title) {
  const sel = h(`select#${id}`, { title }, h('option', { value: '' }, `${label} default`));
  for (let i = 1; i <= quorumN; i++) sel.append(h('option', { value: i }, `${label}=${i}`));
  return sel;
}

async function showTrace(res, box) {
  const id = res.headers.get('x-rc-trace');
  if (!id) return;
  const trace = await optional(`/api/traces/${encodeURIComponent(id)}`).catch(() => null);
  if (trace) box.append(traceLanes(trace));
}

async function kv(method, key, value, w, r) {
  // Ask for a trace only where the node records them (older nodes refuse unknown queries).
  const q = new URLSearchParams((await hasRoute('/api/traces')) ? { trace: '1' } : {});
  if (method === 'GET' && r) q.set('r', r);
  if (method !== 'GET' && w) q.set('w', w);
  const started = performance.now();
  const box = h('div.result');
  try {
    const res = await api(method, `/api/kv/${encodeURIComponent(key)}?${q}`, method === 'PUT' ? value : undefined, { raw: true });
    const ms = (performance.now() - started).toFixed(1);
    const body = method === 'GET' ? await res.text() : JSON.stringify(await res.json());
    fill(box, h('p.ok#kv-result', { 'data-outcome': 'ok' }, `${method} ${key}: ${method === 'GET' ? `“${body}”` : body} in ${ms} ms`));
    await showTrace(res, box);
  } catch (e) {
    fill(box, h('p.bad#kv-result', { 'data-outcome': e.code || 'error' }, `${method} ${key}: ${e.code ? `${e.code}: ` : ''}${e.message}`));
  }
  fill(kvOut, box);
}

function transferRow(name, kind) {
  const bar = h('progress', { max: 100, value: 0 });
  const label = h('span.label', 'waiting…');
  const cancel = new AbortController();
  const row = h('div.transfer', { 'data-kind': kind, 'data-name': name },
    h('span.name', `${kind === 'upload' ? '↑' : '↓'} ${name}`), bar, label,
    h('button.link', { title: 'Cancel or clear', on: { click: () => { cancel.abort(); row.remove(); } } }, '×'));
  tray.prepend(row);
  return {
    signal: cancel.signal,
    progress(p) {
      const pct = p.total ? Math.min(100, (100 * p.loaded) / p.total) : 0;
      bar.value = pct;
      const speed = p.seconds > 0 ? p.loaded / p.seconds : 0;
      label.textContent = `${pct.toFixed(0)}% · ${fmtBytes(p.loaded)}${p.total ? ` of ${fmtBytes(p.total)}` : ''} · ${fmtBytes(speed)}/s`;
      row.dataset.percent = pct.toFixed(0);
    },
    done(text) { bar.value = 100; row.dataset.percent = '100'; row.dataset.state = 'done'; label.textContent = text; row.classList.add('done'); },
    failed(text) { row.dataset.state = 'failed'; label.textContent = text; row.classList.add('failed'); },
  };
}

async function upload(file, w) {
  const t = transferRow(file.name, 'upload');
  const q = new URLSearchParams({ name: file.name });
  if (w) q.set('w', w);
  try {
    const meta = await transfer({ method: 'POST', url: `/api/files?${q}`, body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' }, onProgress: (p) => p.phase === 'upload' && t.progress(p), signal: t.signal });
    t.done(`stored: ${fmtBytes(meta.size)} in ${meta.chunk_count} chunks · id ${meta.id}`);
    toast(`uploaded ${file.name}`);
    listFiles();
  } catch (e) {
    t.failed(`failed: ${e.message}`);
  }
}

async function download(meta) {
  const t = transferRow(meta.name, 'download');
  try {
    const blob = await transfer({ method: 'GET', url: `/api/files/${meta.id}/content`, responseType: 'blob', onProgress: (p) => t.progress({ ...p, total: p.total || meta.size }), signal: t.signal });
    t.done(`downloaded ${fmtBytes(blob.size)} (checked against the SHA-256 of each chunk by the node)`);
    const a = h('a', { href: URL.createObjectURL(blob), download: meta.name });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 10000);
  } catch (e) {
    t.failed(`failed: ${e.message}`);
  }
}

async function listFiles() {
  try {
    const list = await api('GET', '/api/files?limit=100');
    fill(fileList, list.files.length ? h('table.grid#files-table',
      h('thead', h('tr', ['name', 'size', 'chunks', 'uploaded', 'id', ''].map((c) => h('th', c)))),
      h('tbody', list.files.map((f) => h('tr', { 'data-file': f.name },
        h('td', f.name), h('td', fmtBytes(f.size)), h('td', `${f.chunk_count} × ${fmtBytes(f.chunk_size)}`), h('td', fmtTime(f.created_ms)), h('td.small', f.id),
        h('td',
          h('button', { on: { click: () => download(f) } }, 'Download'),
          h('button.danger.admin-only', {
            on: {
              click: async () => {
                try { await api('DELETE', `/api/files/${f.id}`); toast(`deleted ${f.name}`); listFiles(); } catch (e) { toast(e.message, 'error'); }
              },
            },
          }, 'Delete')))))) : h('p.zero', 'No files yet.'));
  } catch (e) {
    fill(fileList, h('p.bad', `files: ${e instanceof ApiError ? e.message : e}`));
  }
}

export default {
  id: 'data',
  title: 'Data',
  mount(root, s) {
    el = root;
    quorumN = (s.cluster?.replicated_quorum || s.cluster?.quorum)?.n || 3;
    const key = h('input#kv-key', { placeholder: 'key', required: true });
    const value = h('input#kv-value', { placeholder: 'value (for Set)' });
    const w = quorumSelect('kv-w', 'W', 'Acknowledgements a write waits for');
    const r = quorumSelect('kv-r', 'R', 'Answers a read waits for');
    kvOut = h('div#kv-out');
    const act = (method) => (e) => { e.preventDefault(); if (key.value) kv(method, key.value, value.value, w.value, r.value); };
    const fileInput = h('input#file-input', { type: 'file', multiple: true });
    const fw = quorumSelect('file-w', 'W', 'Acknowledgements each chunk write waits for');
    tray = h('div.tray#transfers');
    fileList = h('div#file-list');
    const drop = h('div.drop', {
      on: {
        dragover: (e) => { e.preventDefault(); drop.classList.add('over'); },
        dragleave: () => drop.classList.remove('over'),
        drop: (e) => { e.preventDefault(); drop.classList.remove('over'); for (const f of e.dataTransfer.files) upload(f, fw.value); },
      },
    }, 'Drop files here, or ', fileInput, fw, h('button#upload-btn.admin-only', { on: { click: () => { for (const f of fileInput.files) upload(f, fw.value); } } }, 'Upload'));
    fill(el,
      h('section.card',
        h('h3', 'Keys'),
        h('form.toolbar#kv-form', key, value, w, r,
          h('button#kv-get', { on: { click: act('GET') } }, 'Get'),
          h('button#kv-set.admin-only', { on: { click: act('PUT') } }, 'Set'),
          h('button#kv-del.danger.admin-only', { on: { click: act('DELETE') } }, 'Delete')),
        h('p.note', 'A smaller W answers sooner but a later read may miss the write unless R + W > N; a smaller R reads faster but may return an older version (then repaired in the background).'),
        kvOut),
      h('section.card',
        h('h3', 'Files'),
        drop,
        tray,
        fileList));
    if (!getKey()) return;
    listFiles();
  },
  update() {},
};

