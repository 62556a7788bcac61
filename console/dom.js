// Building the page: elements from code, text only as text nodes. Nothing
// here (nor anywhere in the console) parses a string as markup.

/**
 * `h('td', {class: 'num'}, 'text', child)`: an element with attributes and
 * children; strings and numbers become text nodes, null and false are skipped.
 * `on*` attributes take functions and become listeners.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'for') el.htmlFor = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = Boolean(v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form control: `<label>text <control></label>`. */
export function field(text, control) {
  return h('label', {}, text, control);
}

/** An error box for a failed call: status, reason, index and plugin. */
export function errorBox(err) {
  const b = err.body || {};
  const parts = [
    err.status ? `${err.status} ${b.error || ''}`.trim() : String(err.message || err),
    b.reason ? `reason: ${b.reason}` : null,
    b.index !== undefined ? `index: ${b.index}` : null,
    b.plugin ? `plugin: ${b.plugin}` : null,
    b.offset !== undefined ? `offset: ${b.offset}` : null,
  ].filter(Boolean);
  return h('p', { class: 'error', role: 'alert' }, `✖ ${parts.join(' · ')}`);
}

/** A badge whose state is said in words and a sign, not by colour only. */
export function badge(text, state = '') {
  const sign = state === 'bad' ? '✖ ' : state === 'ok' ? '✓ ' : '';
  return h('span', { class: `badge ${state}` }, sign + text);
}
