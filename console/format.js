// Numbers and sizes as people read them.

export function num(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: 1 });
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toLocaleString('en-US', { maximumFractionDigits: i ? 1 : 0 })} ${units[i]}`;
}

export function rate(n, unit = '/s') {
  return n === null || n === undefined ? '—' : `${num(n)}${unit}`;
}

/** A duration in seconds as `3d 4h`, `5m 2s` or `1.2s`. */
export function age(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—';
  const s = Math.max(0, seconds);
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const parts = [[86400, 'd'], [3600, 'h'], [60, 'm'], [1, 's']];
  const out = [];
  let rest = Math.floor(s);
  for (const [size, unit] of parts) {
    if (rest >= size && out.length < 2) { out.push(`${Math.floor(rest / size)}${unit}`); rest %= size; }
  }
  return out.join(' ');
}

/** A netlog duration (`7day`, `1h30m`, `500ms`) in seconds; null if unreadable. */
export function durationSeconds(text) {
  if (typeof text === 'number') return text;
  if (typeof text !== 'string') return null;
  const units = { ns: 1e-9, us: 1e-6, 'µs': 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400, day: 86400, days: 86400, w: 604800, week: 604800, weeks: 604800, month: 2592000, months: 2592000, y: 31536000, year: 31536000 };
  let total = 0; let matched = false;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)\s*([a-zµ]+)/gi)) {
    const u = units[m[2].toLowerCase()];
    if (u === undefined) return null;
    total += Number(m[1]) * u; matched = true;
  }
  return matched ? total : null;
}
