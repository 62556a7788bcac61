// The broker itself (admin only): answers by class, open streams and long
// polls, memory and CPU, from the `broker` part of /_stats.

import { h, fill, errorBox } from './dom.js';
import { num, bytes, rate } from './format.js';
import { subscribe, latest, docRate } from './samples.js';
import { lineChart } from './chart.js';

export function render(main, { me }) {
  if (!me.admin) {
    fill(main, h('h1', {}, 'Broker'), h('p', { class: 'note' }, 'Only a token with admin sees the broker page.'));
    return;
  }
  const out = h('div');
  const charts = h('div');
  fill(main, h('h1', {}, 'Broker'), out, charts);
  const answers = lineChart(charts, 'Answers per second', ['2xx', '4xx', '5xx']);
  const cpu = lineChart(charts, 'CPU (cores)', ['cpu']);
  const stop = subscribe((err) => {
    if (err) { fill(out, errorBox(err)); return; }
    const b = latest().doc.broker;
    if (!b) { fill(out, h('p', { class: 'note' }, 'The broker part of /_stats is for admin only.')); return; }
    const cls = (k) => docRate((d) => d.broker && d.broker.answers[k]);
    const cores = docRate((d) => d.broker && d.broker.cpu_seconds);
    fill(out, h('dl', { class: 'facts' },
      ['1xx', '2xx', '3xx', '4xx', '5xx'].flatMap((k) => [h('dt', {}, `Answers ${k}`), h('dd', {}, `${num(b.answers[k])} (${rate(cls(k))})`)]),
      h('dt', {}, 'Open streams'), h('dd', {}, num(b.streams)),
      h('dt', {}, 'Long polls'), h('dd', {}, num(b.long_polls)),
      h('dt', {}, 'Answer bytes in flight'), h('dd', {}, bytes(b.answer_bytes_in_flight)),
      h('dt', {}, 'Resident memory'), h('dd', {}, bytes(b.resident_bytes)),
      h('dt', {}, 'Open descriptors'), h('dd', {}, num(b.open_fds)),
      h('dt', {}, 'CPU'), h('dd', {}, cores === null ? '—' : `${num(cores * 100)}% of one core`)));
    answers.push(latest().t, [cls('2xx'), cls('4xx'), cls('5xx')]);
    cpu.push(latest().t, [cores]);
  });
  return () => { stop(); answers.destroy(); cpu.destroy(); };
}
