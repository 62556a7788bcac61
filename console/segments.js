// A topic's segments: first offset, size, age against `segment_age`, fill
// against `segment_size`. From GET /{topic}.

import { getJSON, topicPath } from './api.js';
import { h, fill } from './dom.js';
import { num, bytes, age, durationSeconds } from './format.js';
import { topicHeader } from './topic.js';

export async function render(main, { topic }) {
  const info = await getJSON(topicPath(topic));
  const s = info.settings || {};
  const maxAge = durationSeconds(s.segment_age);
  const maxSize = Number(s.segment_size) || null;
  const now = Date.now() / 1000;
  const rows = info.segments.map((seg) => {
    const ageS = now - Date.parse(seg.mod_time) / 1000;
    const fill_ = maxSize ? Math.min(1, seg.data_size / maxSize) : null;
    return h('tr', {},
      h('th', { scope: 'row', class: 'num' }, num(seg.first_offset)),
      h('td', { class: 'num' }, bytes(seg.disk_size)),
      h('td', {}, `last write ${age(ageS)} ago${maxAge ? ` (segment_age ${age(maxAge)})` : ''}`),
      h('td', {}, fill_ === null ? '—' : [
        h('meter', { min: '0', max: '1', value: String(fill_), 'aria-label': `fill of segment ${seg.first_offset}` }),
        ` ${Math.round(fill_ * 100)}% of ${bytes(maxSize)}`]));
  });
  fill(main, topicHeader(topic, 'segments'),
    h('p', { class: 'note' }, `segment_size ${maxSize ? bytes(maxSize) : '—'}, segment_age ${s.segment_age ?? '—'}`),
    rows.length ? h('table', { id: 'segments' }, h('thead', {}, h('tr', {},
      h('th', { scope: 'col', class: 'num' }, 'First offset'), h('th', { scope: 'col', class: 'num' }, 'Size'),
      h('th', { scope: 'col' }, 'Age'), h('th', { scope: 'col' }, 'Fill'))), h('tbody', {}, rows))
      : h('p', { class: 'note' }, 'No segments yet.'));
}
