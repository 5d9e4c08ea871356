// The HTTP API, same origin, with the signed-in key. Errors come back as ApiError with the
// server's code and message; a 404 of a route that does not exist is NotAvailable.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
  get missingRoute() {
    return this.status === 404 && /no such endpoint/.test(this.message);
  }
}

let key = sessionStorage.getItem('rc-key') || '';
export const getKey = () => key;
export function setKey(k) {
  key = k;
  if (k) sessionStorage.setItem('rc-key', k); else sessionStorage.removeItem('rc-key');
}

export async function api(method, path, body, { raw = false, headers = {} } = {}) {
  const init = { method, headers: { 'X-API-Key': key, ...headers } };
  if (body !== undefined) {
    if (body instanceof Blob || body instanceof ArrayBuffer || typeof body === 'string') init.body = body;
    else { init.body = JSON.stringify(body); init.headers['Content-Type'] = 'application/json'; }
  }
  const res = await fetch(path, init);
  if (!res.ok) {
    let code = '';
    let message = res.statusText;
    try { const j = await res.json(); code = j.error?.code; message = j.error?.message || message; } catch { /* not JSON */ }
    throw new ApiError(res.status, code, message);
  }
  if (raw) return res;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export const get = (path) => api('GET', path);

let routes = null;
/** The routes this node serves, from its OpenAPI document (asked once). */
async function knownRoutes() {
  if (!routes) {
    routes = fetch('/api/openapi.json').then((r) => r.json()).then((doc) => Object.keys(doc.paths || {}).map((p) => new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`))).catch(() => null);
  }
  return routes;
}

/** Whether this node has the route of `path` (a route it does not list is not there yet). */
export async function hasRoute(path) {
  const list = await knownRoutes();
  return !list || list.some((re) => re.test(path.split('?')[0]));
}

/** GET that answers null when the route does not exist on this node (yet). */
export async function optional(path) {
  if (!(await hasRoute(path))) return null;
  try { return await get(path); } catch (e) { if (e.missingRoute) return null; throw e; }
}

/** An XHR transfer with progress (fetch has no upload progress). */
export function transfer({ method, url, body, headers = {}, responseType = 'json', onProgress, signal }) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open(method, url);
    x.setRequestHeader('X-API-Key', key);
    for (const [k, v] of Object.entries(headers)) x.setRequestHeader(k, v);
    x.responseType = responseType;
    const started = performance.now();
    const report = (e, phase) => onProgress?.({ phase, loaded: e.loaded, total: e.lengthComputable ? e.total : null, seconds: (performance.now() - started) / 1000 });
    x.upload.onprogress = (e) => report(e, 'upload');
    x.onprogress = (e) => report(e, 'download');
    x.onload = () => {
      if (x.status >= 200 && x.status < 300) resolve(x.response);
      else {
        const err = x.response?.error || {};
        reject(new ApiError(x.status, err.code, err.message || `HTTP ${x.status}`));
      }
    };
    x.onerror = () => reject(new ApiError(0, 'NETWORK', 'the connection failed'));
    x.onabort = () => reject(new ApiError(0, 'ABORTED', 'cancelled'));
    signal?.addEventListener('abort', () => x.abort());
    x.send(body ?? null);
  });
}
