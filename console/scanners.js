// A topic's scanners (position, lag, lag trend) and consumer groups when
// the broker reports them (pending by state, oldest unacked age). Read from
// GET /{topic} every SAMPLE_MS; the trend is the change since the first
// sample this page took.

import { getJSON, topicPath } from './api.js';
import { h, fill, errorBox } from './dom.js';
import { num, age } from './format.js';
import { topicHeader } from './topic.js';
import { SAMPLE_MS } from './samples.js';

function trend(now, then) {
  if (then === undefined) return '—';
  const d = now - then;
  return d > 0 ? `▲ +${num(d)}` : d < 0 ? `▼ ${num(d)}` : '= steady';
}

function groupsTable(groups) {
  if (!Array.isArray(groups) && (typeof groups !== 'object' || groups === null)) return null;
  const list = Array.isArray(groups) ? groups : Object.entries(groups).map(([name, g]) => ({ name, ...g }));
  return [h('h2', {}, 'Consumer groups'), list.length === 0 ? h('p', { class: 'note' }, 'No groups.') :
    h('table', { id: 'groups' }, h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Group'), h('th', { scope: 'col', class: 'num' }, 'Lag'),
      h('th', { scope: 'col' }, 'Pending by state'), h('th', { scope: 'col', class: 'num' }, 'Oldest unacked'))),
    h('tbody', {}, list.map((g) => h('tr', {},
      h('th', { scope: 'row' }, String(g.name ?? g.group ?? '?')),
      h('td', { class: 'num' }, num(g.lag)),
      h('td', {}, Object.entries(g.pending || {}).map(([s, n]) => `${s} ${num(n)}`).join(', ') || '—'),
      h('td', { class: 'num' }, age(g.oldest_unacked_seconds ?? g.oldest_unacked_age_seconds)))))) ];
}

export async function render(main, { topic }) {
  const out = h('div');
  const first = new Map();
  fill(main, topicHeader(topic, 'scanners'), out);
  async function draw() {
    let info;
    try { info = await getJSON(topicPath(topic)); } catch (err) { fill(out, errorBox(err)); return; }
    const end = info.latest_offset + 1;
    const scanners = Object.values(info.scanners || {});
    const rows = scanners.map((s) => {
      const lag = Math.max(0, end - s.next);
      if (!first.has(s.id)) first.set(s.id, lag);
      return h('tr', {},
        h('th', { scope: 'row' }, h('code', {}, s.id)),
        h('td', {}, s.persistent ? 'persistent' : 'temporary'),
        h('td', { class: 'num' }, num(s.next)),
        h('td', { class: 'num' }, num(lag)),
        h('td', {}, trend(lag, first.get(s.id))));
    });
    fill(out,
      h('h2', {}, 'Scanners'),
      h('p', { class: 'note' }, `${num(info.scanner_count)} scanners; lag is the messages between a scanner's next offset and the end of the topic.`),
      rows.length ? h('table', { id: 'scanners' }, h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Scanner'), h('th', { scope: 'col' }, 'Kind'),
        h('th', { scope: 'col', class: 'num' }, 'Next offset'), h('th', { scope: 'col', class: 'num' }, 'Lag'),
        h('th', { scope: 'col' }, 'Lag trend'))), h('tbody', {}, rows)) : h('p', { class: 'note' }, 'No scanners.'),
      groupsTable(info.groups));
  }
  await draw();
  const timer = setInterval(draw, SAMPLE_MS * 2);
  return () => clearInterval(timer);
}
