// A topic's overview: its settings and sizes (GET /{topic}), and rates and
// the publish p99 from the samples of /_stats. Also the tab bar every
// per-topic page shows.

import { getJSON, topicPath } from './api.js';
import { h, fill, errorBox } from './dom.js';
import { num, bytes, rate } from './format.js';
import { subscribe, latest, rateOf, publishP99 } from './samples.js';
import { lineChart } from './chart.js';

const TABS = [['topic', 'Overview'], ['messages', 'Messages'], ['tail', 'Tail'], ['publish', 'Publish'],
  ['scanners', 'Scanners'], ['groups', 'Groups'], ['plugins', 'Plugins'], ['segments', 'Segments']];

/** The heading and tab bar of topic `name`, `current` marked. */
export function topicHeader(name, current) {
  const base = `#/topic/${encodeURIComponent(name)}`;
  return [
    h('h1', {}, 'Topic ', h('code', {}, name)),
    h('nav', { class: 'tabs', 'aria-label': 'Topic pages' }, TABS.map(([page, label]) => h('a', {
      href: page === 'topic' ? base : `${base}/${page}`,
      'aria-current': page === current ? 'page' : null,
    }, label))),
  ];
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export async function render(main, { topic }) {
  const info = await getJSON(topicPath(topic));
  const live = h('div');
  const charts = h('div');
  const s = info.settings || {};
  fill(main, topicHeader(topic, 'topic'),
    h('h2', {}, 'Sizes'),
    facts([
      ['First offset', num(info.first_offset)],
      ['Latest offset', info.latest_offset < 0 ? 'empty' : num(info.latest_offset)],
      ['Disk', bytes(info.disk_size)],
      ['Segments', num(info.segments.length)],
      ['Scanners', num(info.scanner_count)],
      ['Compression', String(info.compression ?? '—')],
      ['Last write', info.mod_time ?? '—'],
    ]),
    h('h2', {}, 'Rates'), live, charts,
    h('h2', {}, 'Settings'),
    facts(Object.entries(s).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)])));
  const rates = lineChart(charts, 'Messages per second', ['in', 'out']);
  const p99 = lineChart(charts, 'Publish p99 (ms)', ['p99'], ' ms');
  const stop = subscribe((err) => {
    if (err) { fill(live, errorBox(err)); return; }
    const sample = latest();
    const inRate = rateOf(topic, (x) => x.messages_in);
    const outRate = rateOf(topic, (x) => x.messages_out);
    const p = publishP99(topic);
    fill(live, facts([
      ['Messages in', rate(inRate)], ['Messages out', rate(outRate)],
      ['Bytes in', `${bytes(rateOf(topic, (x) => x.bytes_in))}/s`],
      ['Publish p99', p === null ? '—' : `${num(p)} ms`],
    ]));
    rates.push(sample.t, [inRate, outRate]);
    p99.push(sample.t, [p]);
  });
  return () => { stop(); rates.destroy(); p99.destroy(); };
}
