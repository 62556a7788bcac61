// A topic's consumer groups: per group its backlog (messages not yet
// delivered) and its trend, unacked messages, pending entries by state
// (leased, waiting, parked), the age of the oldest unacked message, waiting
// receives and the consumers seen, from GET /{topic}/groups and
// GET /{topic}/groups/{group} every 2 × SAMPLE_MS. At most MAX_GROUPS
// groups are read per sample; the trend is the change since the first
// sample this page took, and the chart the backlog of the largest ones.
// Looking creates, leases and settles nothing.

import { getJSON, topicPath } from './api.js';
import { h, fill, errorBox, badge } from './dom.js';
import { num, age } from './format.js';
import { topicHeader } from './topic.js';
import { SAMPLE_MS } from './samples.js';
import { lineChart } from './chart.js';

/** Groups read per sample (a topic allows 64 by default). */
const MAX_GROUPS = 100;
/** Groups drawn in the backlog chart (the largest backlogs). */
const CHARTED = 4;
/** Pending states, in the order the broker's info names them. */
const STATES = ['leased', 'waiting', 'parked'];

function trend(now, then) {
  if (then === undefined) return '—';
  const d = now - then;
  return d > 0 ? `▲ +${num(d)}` : d < 0 ? `▼ ${num(d)}` : '= steady';
}

/** The consumers seen, most recent first, each with how long ago. */
function consumers(seen) {
  const list = Object.entries(seen || {}).sort((a, b) => a[1] - b[1]);
  if (!list.length) return '—';
  return h('ul', { class: 'plain' }, list.map(([name, secs]) => h('li', {}, h('code', {}, name), ` ${age(secs)} ago`)));
}

/** Pending entries by state, each named, with a ✖ sign on parked ones. */
function pending(byState) {
  return STATES.map((s) => {
    const n = byState?.[s] ?? 0;
    return badge(`${s} ${num(n)}`, s === 'parked' && n > 0 ? 'bad' : '');
  });
}

function row(g, first) {
  const oldest = g.oldest_unacked;
  return h('tr', { 'data-group': g.name },
    h('th', { scope: 'row' }, h('code', {}, g.name)),
    h('td', { class: 'num' }, num(g.backlog)),
    h('td', {}, trend(g.backlog, first.get(g.name))),
    h('td', { class: 'num' }, num(g.unacked)),
    h('td', { class: 'pending' }, pending(g.pending)),
    h('td', {}, oldest ? `${age(oldest.age_seconds)} (offset ${num(oldest.offset)})` : '—'),
    h('td', { class: 'num' }, num(g.waiting_receives)),
    h('td', {}, consumers(g.consumers)));
}

function settings(groups) {
  return h('table', { id: 'group-settings' },
    h('thead', {}, h('tr', {}, ['Group', 'Lease', 'Longest lease', 'Max deliveries', 'Dead letters to', 'Max pending',
      'Delivered', 'Redelivered', 'Acked', 'Expired', 'Dead-lettered'].map((t, i) => h('th', { scope: 'col', class: i > 2 && i !== 4 ? 'num' : null }, t)))),
    h('tbody', {}, groups.map((g) => {
      const s = g.settings || {};
      const c = g.counters || {};
      return h('tr', {},
        h('th', { scope: 'row' }, h('code', {}, g.name)),
        h('td', {}, s.lease_time ?? '—'), h('td', {}, s.max_lease_time ?? '—'),
        h('td', { class: 'num' }, s.max_deliveries ? num(s.max_deliveries) : 'unlimited'),
        h('td', {}, s.dead_letter ? h('code', {}, s.dead_letter) : 'none'),
        h('td', { class: 'num' }, num(s.max_pending)),
        h('td', { class: 'num' }, num(c.delivered)), h('td', { class: 'num' }, num(c.redelivered)),
        h('td', { class: 'num' }, num(c.acked)), h('td', { class: 'num' }, num(c.expired)),
        h('td', { class: 'num' }, num(c.dead_lettered)));
    })));
}

export async function render(main, { topic }) {
  const out = h('div', { id: 'groups-view' });
  const charts = h('div');
  const first = new Map();
  let chart = null;
  let charted = null;
  fill(main, topicHeader(topic, 'groups'), out, charts);
  async function draw() {
    let names;
    let groups;
    try {
      names = await getJSON(topicPath(topic, '/groups'));
      const read = names.slice(0, MAX_GROUPS).map((n) => getJSON(topicPath(topic, `/groups/${encodeURIComponent(n)}`))
        // A group deleted between the two calls is left out.
        .catch((err) => (err.status === 404 ? null : Promise.reject(err))));
      groups = (await Promise.all(read)).filter(Boolean);
    } catch (err) { fill(out, errorBox(err)); return; }
    for (const g of groups) if (!first.has(g.name)) first.set(g.name, g.backlog);
    const largest = [...groups].sort((a, b) => b.backlog - a.backlog).slice(0, CHARTED);
    if (!chart && largest.length) {
      charted = largest.map((g) => g.name);
      chart = lineChart(charts, 'Backlog of the largest groups (messages)', charted);
    }
    if (chart) {
      const byName = new Map(groups.map((g) => [g.name, g.backlog]));
      chart.push(Date.now() / 1000, charted.map((n) => byName.get(n) ?? null));
    }
    fill(out,
      h('h2', {}, 'Consumer groups'),
      h('p', { class: 'note' }, `${num(names.length)} group${names.length === 1 ? '' : 's'}${names.length > MAX_GROUPS ? `, the first ${MAX_GROUPS} shown` : ''}. `
        + 'Backlog: messages not yet delivered; unacked: the backlog plus pending entries; pending: leased to a consumer, '
        + 'waiting to be delivered again, or parked (a dead letter that could not be written).'),
      groups.length ? [
        h('table', { id: 'groups' }, h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Group'), h('th', { scope: 'col', class: 'num' }, 'Backlog'),
          h('th', { scope: 'col' }, 'Backlog trend'), h('th', { scope: 'col', class: 'num' }, 'Unacked'),
          h('th', { scope: 'col' }, 'Pending by state'), h('th', { scope: 'col' }, 'Oldest unacked'),
          h('th', { scope: 'col', class: 'num' }, 'Waiting receives'), h('th', { scope: 'col' }, 'Consumers seen'))),
        h('tbody', {}, groups.map((g) => row(g, first)))),
        h('h2', {}, 'Settings and counters'),
        settings(groups),
      ] : h('p', { class: 'note', id: 'no-groups' }, 'No consumer groups on this topic.'));
  }
  await draw();
  const timer = setInterval(draw, SAMPLE_MS * 2);
  return () => { clearInterval(timer); if (chart) chart.destroy(); };
}
