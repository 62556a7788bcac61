// A live tail over GET /{topic}/stream (Server-Sent Events, read with fetch
// so the token goes in a header: EventSource cannot send one). Newest on
// top, at most MAX_ROWS rows, a substring filter, pause; resuming (or a
// dropped connection) reconnects with Last-Event-ID: no gap, no duplicate.

import { call, topicPath } from './api.js';
import { h, fill, field, errorBox } from './dom.js';
import { num } from './format.js';
import { topicHeader } from './topic.js';

export const MAX_ROWS = 500;
/** Characters of a payload a row shows. */
export const SHOWN_CHARS = 64 * 1024;
/** Largest event the parser holds, in characters, before giving up on it. */
export const MAX_EVENT_CHARS = 64 * 1024 * 1024;
const RETRY_MS = 2000;
/** How often queued events are drawn, in ms. */
const FLUSH_MS = 50;

/** Splits an SSE byte stream into events {id, event, data}. */
export function sseParser(onEvent) {
  let buf = '';
  return (chunk) => {
    buf += chunk;
    if (buf.length > MAX_EVENT_CHARS) buf = buf.slice(-MAX_EVENT_CHARS);
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const ev = { id: null, event: 'message', data: [] };
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const name = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? '' : line.slice(i + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (name === 'data') ev.data.push(value);
        else if (name === 'id') ev.id = value;
        else if (name === 'event') ev.event = value;
      }
      if (ev.data.length || ev.id !== null) onEvent({ ...ev, data: ev.data.join('\n') });
    }
  };
}

export function render(main, { topic }) {
  const filter = h('input', { type: 'search', id: 'tail-filter' });
  const pause = h('button', { type: 'button', id: 'tail-pause', 'aria-pressed': 'false' }, 'Pause');
  const state = h('span', { role: 'status', id: 'tail-state' }, 'connecting…');
  const body = h('tbody');
  const out = h('div');
  let lastId = null;
  let paused = false;
  let controller = null;
  let closed = false;
  let retry = null;

  const visible = (tr) => !filter.value || tr.dataset.text.includes(filter.value);
  // Events wait here (at most MAX_ROWS: older ones could not be shown
  // anyway) and are drawn together every FLUSH_MS, so a fast topic costs
  // one redraw per interval, not one per message.
  let pending = [];
  let flushTimer = null;

  function queue(ev) {
    pending.push(ev);
    if (pending.length > MAX_ROWS) pending = pending.slice(-MAX_ROWS);
    if (!flushTimer) flushTimer = setTimeout(flush, FLUSH_MS);
  }

  function flush() {
    flushTimer = null;
    const events = pending;
    pending = [];
    const frag = document.createDocumentFragment();
    for (let i = events.length - 1; i >= 0; i--) frag.append(row(events[i]));
    body.prepend(frag);
    while (body.children.length > MAX_ROWS) body.lastElementChild.remove();
  }

  function row(ev) {
    const binary = ev.event === 'binary';
    const shown = ev.data.length > SHOWN_CHARS ? `${ev.data.slice(0, SHOWN_CHARS)}…` : ev.data;
    const tr = h('tr', {},
      h('th', { scope: 'row', class: 'num' }, num(Number(ev.id))),
      h('td', {}, binary ? 'binary (hex)' : 'text'),
      h('td', {}, h('pre', { class: 'payload' }, shown)));
    tr.dataset.text = shown;
    tr.hidden = !visible(tr);
    return tr;
  }

  async function connect() {
    if (closed || paused) return;
    controller = new AbortController();
    const headers = lastId !== null ? { 'Last-Event-ID': lastId } : {};
    try {
      const res = await call(topicPath(topic, '/stream?from=end'), { headers, signal: controller.signal, stream: true });
      fill(state, '● live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const parse = sseParser((ev) => {
        if (ev.event === 'error') { fill(out, errorBox({ message: ev.data })); return; }
        if (ev.id !== null) lastId = ev.id;
        queue(ev);
      });
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parse(value);
      }
      if (!closed && !paused) { fill(state, '○ stream ended, reconnecting'); retry = setTimeout(connect, RETRY_MS); }
    } catch (err) {
      if (closed || paused) return;
      if (err.name !== 'AbortError') fill(out, errorBox(err));
      fill(state, '○ disconnected, retrying');
      retry = setTimeout(connect, RETRY_MS);
    }
  }

  pause.addEventListener('click', () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    fill(pause, paused ? 'Resume' : 'Pause');
    if (paused) {
      clearTimeout(retry);
      if (controller) controller.abort();
      fill(state, `‖ paused at offset ${lastId ?? '—'}`);
    } else {
      fill(state, 'resuming…');
      connect();
    }
  });
  filter.addEventListener('input', () => { for (const tr of body.children) tr.hidden = !visible(tr); });

  fill(main, topicHeader(topic, 'tail'),
    h('div', { class: 'toolbar' }, field('Show only rows containing', filter), pause, state),
    out,
    h('p', { class: 'note' }, `New messages appear on top; the last ${MAX_ROWS} are kept.`),
    h('table', { id: 'tail' }, h('thead', {}, h('tr', {},
      h('th', { scope: 'col', class: 'num' }, 'Offset'), h('th', { scope: 'col' }, 'Kind'),
      h('th', { scope: 'col' }, 'Payload'))), body));
  connect();
  return () => { closed = true; clearTimeout(retry); clearTimeout(flushTimer); if (controller) controller.abort(); };
}
