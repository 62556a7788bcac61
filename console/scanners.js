// A topic's scanners (position, lag, lag trend), read from GET /{topic}
// every 2 × SAMPLE_MS; the trend is the change since the first sample this
// page took. Consumer groups have a page of their own (groups.js).

import { getJSON, topicPath } from './api.js';
import { h, fill, errorBox } from './dom.js';
import { num } from './format.js';
import { topicHeader } from './topic.js';
import { SAMPLE_MS } from './samples.js';
import { lineChart } from './chart.js';

/** Scanners drawn in the lag chart (the most lagging ones). */
const CHARTED = 4;

function trend(now, then) {
  if (then === undefined) return '—';
  const d = now - then;
  return d > 0 ? `▲ +${num(d)}` : d < 0 ? `▼ ${num(d)}` : '= steady';
}

export async function render(main, { topic }) {
  const out = h('div');
  const charts = h('div');
  const first = new Map();
  let chart = null;
  let charted = null;
  fill(main, topicHeader(topic, 'scanners'), out, charts);
  async function draw() {
    let info;
    try { info = await getJSON(topicPath(topic)); } catch (err) { fill(out, errorBox(err)); return; }
    const end = info.latest_offset + 1;
    const scanners = Object.values(info.scanners || {});
    const lags = scanners.map((s) => [s.id, Math.max(0, end - s.next)]).sort((a, b) => b[1] - a[1]).slice(0, CHARTED);
    if (!chart && lags.length) {
      charted = lags.map(([id]) => id);
      chart = lineChart(charts, 'Lag of the most lagging scanners (messages)', charted.map((id) => id.slice(0, 8)));
    }
    if (chart) {
      const byId = new Map(lags);
      chart.push(Date.now() / 1000, charted.map((id) => byId.get(id) ?? null));
    }
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
        h('th', { scope: 'col' }, 'Lag trend'))), h('tbody', {}, rows)) : h('p', { class: 'note' }, 'No scanners.'));
  }
  await draw();
  const timer = setInterval(draw, SAMPLE_MS * 2);
  return () => { clearInterval(timer); if (chart) chart.destroy(); };
}
