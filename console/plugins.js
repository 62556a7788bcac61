// The plugins bound to a topic, per hook: plugin, on_error, calls,
// rejections, failures by kind, call time, fuel, memory, and whether it is
// unavailable (with the reason). From GET /{topic} and /_stats.

import { getJSON, topicPath } from './api.js';
import { h, fill, badge, errorBox } from './dom.js';
import { num, bytes } from './format.js';
import { topicHeader } from './topic.js';
import { subscribe, latest } from './samples.js';

export async function render(main, { topic }) {
  const info = await getJSON(topicPath(topic));
  const out = h('div');
  fill(main, topicHeader(topic, 'plugins'), out);
  const stop = subscribe((err) => {
    if (err) { fill(out, errorBox(err)); return; }
    const t = latest().topics.get(topic);
    if (!t) { fill(out, h('p', { class: 'note' }, 'This topic is not in the stats.')); return; }
    const rows = (t.plugins || []).map((p) => {
      const hook = (info.hooks || {})[p.hook] || {};
      const failures = Object.entries(p.failures || {}).filter(([, n]) => n > 0);
      const mean = p.call_count ? (p.call_seconds_sum / p.call_count) * 1e6 : null;
      return h('tr', {},
        h('th', { scope: 'row' }, p.hook),
        h('td', {}, p.plugin),
        h('td', {}, hook.on_error ?? '—'),
        h('td', { class: 'num' }, num(p.calls)),
        h('td', { class: 'num' }, num(p.rejections)),
        h('td', {}, failures.length ? failures.map(([k, n]) => badge(`${k} ${num(n)}`, 'bad')) : badge('none', 'ok')),
        h('td', { class: 'num' }, mean === null ? '—' : `${num(mean)} µs`),
        h('td', { class: 'num' }, num(p.fuel)),
        h('td', { class: 'num' }, bytes(p.memory_peak_bytes)));
    });
    fill(out,
      t.unavailable ? h('p', { class: 'error', role: 'alert' }, `✖ plugin ${t.unavailable.plugin} unavailable: ${t.unavailable.reason}`) : null,
      rows.length ? h('table', { id: 'plugins' }, h('thead', {}, h('tr', {},
        ['Hook', 'Plugin', 'On error', 'Calls', 'Rejections', 'Failures', 'Mean call', 'Fuel', 'Peak memory']
          .map((c) => h('th', { scope: 'col' }, c)))), h('tbody', {}, rows))
        : h('p', { class: 'note' }, 'No plugin is bound to this topic.'));
  });
  return stop;
}
