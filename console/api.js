// The one way the console talks to the broker. Every call goes to a
// same-origin path (anything else throws), carries the token from this
// tab's sessionStorage as `Authorization: Bearer`, never in a URL or a
// cookie, and has a time limit unless it is a stream. A 401 anywhere sends
// the console to its login page.

const TOKEN_KEY = 'netlog.token';
/** Longest an ordinary call may take, in ms. */
export const CALL_TIMEOUT_MS = 15000;

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  forget: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** A failed call: the status and netlog's error body, when there is one. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.reason || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function checkPath(path) {
  if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//') || path.includes('\\')) {
    throw new Error('the console calls same-origin paths only');
  }
}

/**
 * Calls `path`; resolves with the Response when it is 2xx, throws ApiError
 * otherwise. `stream: true` lifts the time limit (for the tail).
 */
export async function call(path, { method = 'GET', body, headers = {}, signal, stream = false } = {}) {
  checkPath(path);
  const h = new Headers(headers);
  const t = token.get();
  if (t) h.set('Authorization', `Bearer ${t}`);
  const signals = [signal, stream ? null : AbortSignal.timeout(CALL_TIMEOUT_MS)].filter(Boolean);
  const res = await fetch(path, {
    method, body, headers: h, credentials: 'omit', cache: 'no-store',
    redirect: 'error', referrerPolicy: 'no-referrer',
    signal: signals.length ? AbortSignal.any(signals) : undefined,
  });
  if (res.ok) return res;
  let errorBody = null;
  try { errorBody = await res.json(); } catch { /* not JSON */ }
  if (res.status === 401) window.dispatchEvent(new CustomEvent('netlog:unauthorized'));
  throw new ApiError(res.status, errorBody);
}

export async function getJSON(path, options) {
  return (await call(path, options)).json();
}

/** `/{topic}` plus `rest`, the name encoded. */
export function topicPath(name, rest = '') {
  return `/${encodeURIComponent(name)}${rest}`;
}

/** Whether `name` matches a rights pattern (`*` any run, `?` one character). */
export function matches(pattern, name) {
  let p = 0, n = 0, star = -1, mark = 0;
  while (n < name.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === name[n])) { p++; n++; }
    else if (p < pattern.length && pattern[p] === '*') { star = p++; mark = n; }
    else if (star >= 0) { p = star + 1; n = ++mark; }
    else return false;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}
