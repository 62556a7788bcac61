// Browsing a topic's messages: GET /{topic}/messages, a read that creates
// no scanner. From the oldest, the latest, an offset or a date-time; 50 per
// page; each payload as text, pretty JSON (on click) or hex. The broker cuts
// payloads over 64 KiB; the whole message is a download.

import { call, topicPath } from './api.js';
import { h, fill, field, errorBox } from './dom.js';
import { num, bytes } from './format.js';
import { topicHeader } from './topic.js';

export const PAGE = 50;

function hexOf(bytes) {
  const out = new Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i].toString(16).padStart(2, '0');
  return out.join(' ');
}

function bytesOf(m) {
  if (m.text !== undefined) return new TextEncoder().encode(m.text);
  const hex = m.hex || '';
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function views(m) {
  const raw = bytesOf(m);
  const text = m.text !== undefined ? m.text : new TextDecoder('utf-8', { fatal: false }).decode(raw);
  return {
    text: () => text,
    json: () => { try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return `not JSON: ${e.message}`; } },
    hex: () => hexOf(raw),
  };
}

async function download(topic, offset, status) {
  try {
    const res = await call(topicPath(topic, `/payload/${offset}`));
    const url = URL.createObjectURL(await res.blob());
    const a = h('a', { href: url, download: `${topic}-${offset}.bin` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    fill(status, 'downloaded');
  } catch (err) { fill(status, errorBox(err)); }
}

function row(topic, m) {
  const v = views(m);
  const pre = h('pre', { class: 'payload' }, v.text());
  const kind = m.text !== undefined ? 'text' : 'binary';
  const status = h('span', { 'aria-live': 'polite' });
  const show = (which) => () => { pre.textContent = v[which](); };
  const extra = [];
  if (m.key !== undefined && m.key !== null) extra.push(h('div', {}, 'key: ', h('code', {}, String(m.key))));
  if (m.headers && typeof m.headers === 'object') {
    for (const [k, val] of Object.entries(m.headers)) extra.push(h('div', {}, 'header ', h('code', {}, k), ': ', h('code', {}, String(val))));
  }
  return h('tr', { 'data-offset': m.offset },
    h('th', { scope: 'row', class: 'num' }, num(m.offset)),
    h('td', { class: 'num' }, bytes(m.size)),
    h('td', {}, m.time ? h('time', { datetime: m.time }, new Date(m.time).toLocaleString()) : '—'),
    h('td', {},
      h('div', { class: 'row-tools' },
        h('span', { class: 'note' }, kind === 'text' ? 'text' : 'binary (not UTF-8)'),
        h('button', { type: 'button', onclick: show('text') }, 'Text'),
        h('button', { type: 'button', onclick: show('json') }, 'Pretty JSON'),
        h('button', { type: 'button', onclick: show('hex') }, 'Hex'),
        m.truncated ? h('button', { type: 'button', onclick: () => download(topic, m.offset, status) }, `Download all ${bytes(m.size)}`) : null,
        m.truncated ? h('span', { class: 'note' }, '(shown: first 64 KiB)') : null,
        status),
      extra, pre));
}

export function render(main, { topic, params }) {
  const from = h('select', { id: 'browse-from' },
    h('option', { value: 'oldest' }, 'oldest'), h('option', { value: 'latest' }, 'latest'),
    h('option', { value: 'offset' }, 'an offset'), h('option', { value: 'time' }, 'a date-time'));
  const offset = h('input', { type: 'number', min: '0', id: 'browse-offset', value: params.get('offset') || '0' });
  const time = h('input', { type: 'datetime-local', id: 'browse-time', step: '1' });
  const body = h('tbody');
  const out = h('div', { 'aria-live': 'polite' });
  const more = h('button', { type: 'button', hidden: true }, 'Next 50');
  let next = null;

  async function load(start, append) {
    fill(out, 'loading…');
    try {
      const res = await call(topicPath(topic, `/messages?from=${encodeURIComponent(start)}&max=${PAGE}`));
      const text = await res.text();
      const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      if (!append) body.replaceChildren();
      const frag = document.createDocumentFragment();
      for (const m of lines) frag.append(row(topic, m));
      body.append(frag);
      next = res.headers.get('x-next-offset');
      more.hidden = lines.length < PAGE;
      fill(out, lines.length || append ? `${body.children.length} messages shown` : 'No messages here.');
    } catch (err) { fill(out, errorBox(err)); }
  }

  function start() {
    switch (from.value) {
      case 'offset': return String(Math.max(0, Math.floor(Number(offset.value) || 0)));
      case 'time': {
        const t = Date.parse(time.value);
        if (Number.isNaN(t)) return 'oldest';
        return `${Math.max(0, Math.floor((Date.now() - t) / 1000))}s`;
      }
      default: return from.value;
    }
  }

  const form = h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); load(start(), false); } },
    field('From', from), field('Offset', offset), field('Date-time (local)', time),
    h('button', { type: 'submit' }, 'Show'));
  more.addEventListener('click', () => { if (next !== null) load(next, true); });
  fill(main, topicHeader(topic, 'messages'), form, out,
    h('table', { id: 'messages' }, h('thead', {}, h('tr', {},
      h('th', { scope: 'col', class: 'num' }, 'Offset'), h('th', { scope: 'col', class: 'num' }, 'Size'),
      h('th', { scope: 'col' }, 'Written'), h('th', { scope: 'col' }, 'Payload'))), body), more);
  if (params.get('offset')) from.value = 'offset';
  load(start(), false);
}
