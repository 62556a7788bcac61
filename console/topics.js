// The topics page: one table from one request (GET /_stats, sampled every
// few seconds for the rates), sortable and filterable, and a chart of the
// broker's total message rates. No request per topic.

import { h, fill, field, badge, errorBox } from './dom.js';
import { num, bytes, rate, age } from './format.js';
import { subscribe, latest, rateOf } from './samples.js';
import { lineChart } from './chart.js';

const COLUMNS = [
  ['name', 'Topic', (t) => t.name, false],
  ['in', 'Msgs/s in', (t) => rateOf(t.name, (x) => x.messages_in), true],
  ['out', 'Msgs/s out', (t) => rateOf(t.name, (x) => x.messages_out), true],
  ['bytes', 'Bytes/s in', (t) => rateOf(t.name, (x) => x.bytes_in), true],
  ['latest', 'Latest offset', (t) => t.latest_offset, true],
  ['disk', 'Disk', (t) => t.disk_bytes, true],
  ['segments', 'Segments', (t) => t.segments, true],
  ['scanners', 'Scanners', (t) => t.scanners, true],
  ['lag', 'Max lag', (t) => t.max_lag, true],
];

function plugins(t) {
  const out = [];
  if (t.unavailable) out.push(badge(`${t.unavailable.plugin} unavailable`, 'bad'));
  for (const p of t.plugins || []) {
    const failed = Object.values(p.failures || {}).reduce((s, n) => s + n, 0);
    out.push(badge(`${p.hook}: ${p.plugin}${failed ? ` (${num(failed)} failed)` : ''}`, failed ? 'bad' : ''));
  }
  return out;
}

/** A topic's consumer groups (only topics with groups have them), each linked to its groups page. */
function groups(t) {
  if (!Array.isArray(t.groups)) return null;
  const page = `#/topic/${encodeURIComponent(t.name)}/groups`;
  return t.groups.map((g) => {
    const pending = Object.values(g.pending || {}).reduce((s, n) => s + n, 0);
    const parked = g.pending?.parked ?? 0;
    const oldest = g.oldest_unacked_seconds;
    const text = `${g.name}: backlog ${num(g.backlog)}, pending ${num(pending)}`
      + `${oldest !== null && oldest !== undefined ? `, oldest ${age(oldest)}` : ''}${parked ? `, ${num(parked)} parked` : ''}`;
    return h('a', { href: page, class: 'badge-link' }, badge(text, parked ? 'bad' : ''));
  });
}

export function render(main) {
  const state = { sort: 'name', desc: false, filter: '' };
  const filter = h('input', { type: 'search', id: 'topic-filter', placeholder: 'part of a name' });
  const count = h('span', { class: 'note', 'aria-live': 'polite' });
  const chartBox = h('div');
  const head = h('thead');
  const body = h('tbody');
  const out = h('div');
  fill(main, h('h1', {}, 'Topics'),
    h('div', { class: 'toolbar' }, field('Filter topics', filter), count),
    chartBox, out, h('table', { id: 'topics' }, h('caption', { class: 'visually-hidden' }, 'Topics, one row each'), head, body));
  const chart = lineChart(chartBox, 'Messages per second, all visible topics', ['in', 'out']);

  // The head is rebuilt only when the sort or the columns change (not on
  // every sample), and keeps keyboard focus on the sort button used.
  let headKey = '';
  function renderHead() {
    const hasGroups = (latest()?.doc.topics || []).some((t) => Array.isArray(t.groups));
    const key = `${state.sort}|${state.desc}|${hasGroups}`;
    if (key === headKey) return hasGroups;
    const refocus = head.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    headKey = key;
    const cells = COLUMNS.map(([col, label, , numeric]) => h('th', {
      class: numeric ? 'num' : null, scope: 'col',
      'aria-sort': state.sort === col ? (state.desc ? 'descending' : 'ascending') : 'none',
    }, h('button', {
      type: 'button', 'data-key': col,
      onclick: () => { state.desc = state.sort === col ? !state.desc : numeric; state.sort = col; draw(); },
    }, label, state.sort === col ? (state.desc ? ' ▼' : ' ▲') : '')));
    cells.push(h('th', { scope: 'col' }, 'Plugins'));
    if (hasGroups) cells.push(h('th', { scope: 'col' }, 'Groups'));
    fill(head, h('tr', {}, cells));
    if (refocus) head.querySelector(`button[data-key="${refocus}"]`)?.focus();
    return hasGroups;
  }

  function draw() {
    const sample = latest();
    if (!sample) return;
    const hasGroups = renderHead();
    const column = COLUMNS.find((c) => c[0] === state.sort);
    const needle = state.filter.toLowerCase();
    const rows = sample.doc.topics
      .filter((t) => !needle || t.name.toLowerCase().includes(needle))
      .map((t) => ({ t, key: column[2](t) }));
    rows.sort((a, b) => {
      const x = a.key ?? -Infinity; const y = b.key ?? -Infinity;
      const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
      return state.desc ? -c : c;
    });
    const frag = document.createDocumentFragment();
    for (const { t } of rows) {
      const link = h('a', { href: `#/topic/${encodeURIComponent(t.name)}` }, t.name);
      const cells = [
        h('th', { scope: 'row' }, link),
        h('td', { class: 'num' }, rate(rateOf(t.name, (x) => x.messages_in), '')),
        h('td', { class: 'num' }, rate(rateOf(t.name, (x) => x.messages_out), '')),
        h('td', { class: 'num' }, bytes(rateOf(t.name, (x) => x.bytes_in))),
        h('td', { class: 'num' }, t.latest_offset < 0 ? 'empty' : num(t.latest_offset)),
        h('td', { class: 'num' }, bytes(t.disk_bytes)),
        h('td', { class: 'num' }, num(t.segments)),
        h('td', { class: 'num' }, num(t.scanners)),
        h('td', { class: 'num' }, t.max_lag === null ? '—' : num(t.max_lag)),
        h('td', {}, plugins(t)),
      ];
      if (hasGroups) cells.push(h('td', {}, groups(t)));
      frag.append(h('tr', {}, cells));
    }
    body.replaceChildren(frag);
    fill(count, `${rows.length} of ${sample.doc.topics.length} topics`);
    // For the browser tests: how many rows, and when (performance.now()).
    main.dataset.renderedAt = String(performance.now());
    main.dataset.rendered = String(sample.doc.topics.length);
  }

  filter.addEventListener('input', () => { state.filter = filter.value; draw(); });
  const stop = subscribe((err) => {
    if (err) { fill(out, errorBox(err)); return; }
    fill(out);
    const sample = latest();
    const sum = (pick) => sample.doc.topics.reduce((s, t) => s + (rateOf(t.name, pick) ?? 0), 0);
    chart.push(sample.t, [sum((x) => x.messages_in), sum((x) => x.messages_out)]);
    draw();
  });
  return () => { stop(); chart.destroy(); };
}
