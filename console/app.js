// The console's shell: the header (ready state, who am I, forget token),
// the login page, and the hash router that hands each page its part of
// <main>. A page module exports `render(main, ctx)` and may return a
// cleanup function, called when the page changes.

import { call, getJSON, token, ApiError } from './api.js';
import { h, fill, field, errorBox } from './dom.js';

const pages = {
  topics: () => import('./topics.js'),
  topic: () => import('./topic.js'),
  messages: () => import('./messages.js'),
  tail: () => import('./tail.js'),
  publish: () => import('./publish.js'),
  scanners: () => import('./scanners.js'),
  groups: () => import('./groups.js'),
  plugins: () => import('./plugins.js'),
  segments: () => import('./segments.js'),
  broker: () => import('./broker.js'),
};

const main = document.getElementById('main');
let cleanup = null;
let me = null;
let generation = 0;

/** The caller as `/_whoami` says; null until known. */
export function whoami() { return me; }

async function refreshWho() {
  const who = document.getElementById('who');
  try {
    me = await getJSON('/_whoami');
  } catch (err) {
    me = null;
    fill(who, '');
    if (err instanceof ApiError && err.status === 401) return false;
    throw err;
  }
  const rights = me.auth
    ? [me.token ? `token ${me.token}` : 'anonymous', me.admin ? 'admin' : null,
      me.produce.length ? `produce ${me.produce.join(' ')}` : null,
      me.consume.length ? `consume ${me.consume.join(' ')}` : null].filter(Boolean).join(' · ')
    : 'authentication off';
  fill(who, rights);
  document.getElementById('forget').hidden = !token.get();
  document.getElementById('nav-broker').hidden = !me.admin;
  return true;
}

async function refreshReady() {
  const el = document.getElementById('ready');
  try {
    await call('/_ready');
    fill(el, '● ready');
  } catch (err) {
    fill(el, `○ not ready${err.body && err.body.reason ? `: ${err.body.reason}` : ''}`);
  }
}

function renderLogin(message) {
  if (cleanup) { cleanup(); cleanup = null; }
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, id: 'token-input' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      token.set(input.value.trim());
      input.value = '';
      try {
        // A refused token re-renders this page with the refusal (the
        // netlog:unauthorized event), so there is nothing more to do here.
        if (await refreshWho()) { location.hash = '#/topics'; route(); }
      } catch (err) { fill(out, errorBox(err)); }
    },
  }, field('Token', input), h('button', { type: 'submit' }, 'Sign in'), out);
  fill(main, h('h1', {}, 'Sign in'),
    message ? h('p', { class: 'error', role: 'alert' }, `✖ ${message}`) : null,
    h('p', { class: 'note' }, 'This broker needs a token. It is kept in this tab only (sessionStorage), never in a URL or a cookie.'),
    form);
  input.focus();
}

/** Parses `#/page/arg?x=y` into {page, topic, params}. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  if (parts[0] === 'topic' && parts[1]) {
    return { page: parts[2] || 'topic', topic: parts[1], params };
  }
  return { page: parts[0] || 'topics', topic: null, params };
}

async function route() {
  const mine = ++generation;
  if (cleanup) { cleanup(); cleanup = null; }
  if (!me) {
    let known;
    try { known = await refreshWho(); } catch (err) { fill(main, errorBox(err)); return; }
    if (!known || (me.auth && !token.get())) { renderLogin(); return; }
  }
  const { page, topic, params } = parseHash();
  const load = pages[page];
  if (!load || mine !== generation) { if (!load) fill(main, h('h1', {}, 'No such page')); return; }
  const mod = await load();
  if (mine !== generation) return;
  fill(main);
  try {
    cleanup = (await mod.render(main, { topic, params, me })) || null;
  } catch (err) {
    fill(main, errorBox(err));
  }
  if (mine !== generation && cleanup) { cleanup(); cleanup = null; }
}

window.addEventListener('netlog:unauthorized', () => {
  me = null;
  const refused = token.get();
  token.forget();
  renderLogin(refused ? 'The broker refused this token (401). Give another one.' : undefined);
});
window.addEventListener('hashchange', route);
document.getElementById('forget').addEventListener('click', () => {
  token.forget();
  me = null;
  document.getElementById('forget').hidden = true;
  route();
});

refreshReady();
setInterval(refreshReady, 10000);
route();
