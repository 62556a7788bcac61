// Samples of GET /_stats, taken every SAMPLE_MS while a page wants them.
// Rates and trends are computed here, in the browser, from two samples;
// the broker keeps no history. At most MAX_SAMPLES samples are kept, each
// as the figures the pages use, so memory stays bounded with many topics.

import { getJSON } from './api.js';

export const SAMPLE_MS = 2000;
export const MAX_SAMPLES = 60;

const samples = [];
const listeners = new Set();
let timer = null;
let inflight = false;

/** The latest sample ({t, doc, topics: Map}) or null. */
export function latest() { return samples.at(-1) || null; }
export function previous() { return samples.at(-2) || null; }

async function take() {
  if (inflight) return;
  inflight = true;
  try {
    const doc = await getJSON('/_stats');
    const topics = new Map(doc.topics.map((t) => [t.name, t]));
    samples.push({ t: Date.now() / 1000, doc, topics });
    if (samples.length > MAX_SAMPLES) samples.shift();
    for (const fn of listeners) fn(null);
  } catch (err) {
    for (const fn of listeners) fn(err);
  } finally {
    inflight = false;
  }
}

/** Calls `fn(err)` after each sample while subscribed; returns the unsubscribe. */
export function subscribe(fn) {
  listeners.add(fn);
  if (!timer) { timer = setInterval(take, SAMPLE_MS); take(); }
  else if (samples.length) fn(null);
  return () => {
    listeners.delete(fn);
    if (!listeners.size) { clearInterval(timer); timer = null; }
  };
}

/** Per second change of `pick(topic)` between the last two samples. */
export function rateOf(name, pick) {
  const a = previous(); const b = latest();
  if (!a || !b) return null;
  const x = a.topics.get(name); const y = b.topics.get(name);
  if (!x || !y || b.t <= a.t) return null;
  return Math.max(0, (pick(y) - pick(x)) / (b.t - a.t));
}

/** Per second change of `pick(doc)` of the whole document. */
export function docRate(pick) {
  const a = previous(); const b = latest();
  if (!a || !b || b.t <= a.t) return null;
  const x = pick(a.doc); const y = pick(b.doc);
  if (x === null || x === undefined || y === null || y === undefined) return null;
  return Math.max(0, (y - x) / (b.t - a.t));
}

/** The 99th percentile of publish time over the last interval, in ms. */
export function publishP99(name) {
  const a = previous(); const b = latest();
  const x = a && a.topics.get(name); const y = b && b.topics.get(name);
  if (!y) return null;
  const bounds = b.doc.publish_bounds_seconds;
  const counts = y.publish.buckets.map((c, i) => c - (x ? x.publish.buckets[i] : 0));
  const total = counts.reduce((s, c) => s + c, 0);
  if (total <= 0) return null;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= 0.99 * total) return i < bounds.length ? bounds[i] * 1000 : bounds.at(-1) * 1000;
  }
  return null;
}
