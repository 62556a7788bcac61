// Publishing from the console (only for a caller with `produce` on the
// topic): one text message (POST /{topic}/payload) or an ndjson batch
// (POST /{topic}/messages). Shows the offset, or the error with its reason,
// index and plugin.

import { call, topicPath, matches } from './api.js';
import { h, fill, field, errorBox } from './dom.js';
import { num } from './format.js';
import { topicHeader } from './topic.js';

export function mayProduce(me, topic) {
  return Boolean(me) && me.produce.some((p) => matches(p, topic));
}

export function render(main, { topic, me }) {
  if (!mayProduce(me, topic)) {
    fill(main, topicHeader(topic, 'publish'),
      h('p', { class: 'note', id: 'no-publish' }, `Your token may not publish to ${topic}.`));
    return;
  }
  const one = h('input', { type: 'radio', name: 'kind', value: 'one', checked: true, id: 'kind-one' });
  const batch = h('input', { type: 'radio', name: 'kind', value: 'batch', id: 'kind-batch' });
  const text = h('textarea', { id: 'publish-body', required: true, spellcheck: 'false' });
  const out = h('div', { 'aria-live': 'polite', id: 'publish-result' });
  const form = h('form', {
    id: 'publish-form',
    onsubmit: async (e) => {
      e.preventDefault();
      fill(out, 'publishing…');
      try {
        if (batch.checked) {
          const res = await call(topicPath(topic, '/messages'), {
            method: 'POST', body: text.value, headers: { 'Content-Type': 'application/x-ndjson' },
          });
          const r = await res.json();
          fill(out, h('p', {}, `✓ published ${num(r.count)} messages from offset ${num(r.first_offset)}`));
        } else {
          const res = await call(topicPath(topic, '/payload'), {
            method: 'POST', body: text.value, headers: { 'Content-Type': 'text/plain; charset=utf-8' },
          });
          const r = await res.json();
          fill(out, h('p', {}, `✓ published at offset ${num(r.offset)}`));
        }
      } catch (err) { fill(out, errorBox(err)); }
    },
  },
  h('fieldset', {}, h('legend', {}, 'What to send'),
    h('label', { for: 'kind-one' }, one, ' one message (the text as it is)'),
    h('label', { for: 'kind-batch' }, batch, ' a batch: one message per line (ndjson)')),
  field('Message', text),
  h('button', { type: 'submit' }, 'Publish'));
  fill(main, topicHeader(topic, 'publish'), form, out);
}
