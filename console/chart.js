// Line charts over the vendored uPlot (loaded as a classic script before the
// modules, as `globalThis.uPlot`). A chart keeps at most MAX_POINTS points.

/** Points a chart keeps. */
export const MAX_POINTS = 120;

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || 'gray';
}

/**
 * A chart in `el` with one line per label; `push(timeSeconds, values)` adds
 * a point. The chart has a text summary (the last values) for screen readers.
 */
export function lineChart(el, title, labels, unit = '') {
  const U = globalThis.uPlot;
  const summary = document.createElement('p');
  summary.className = 'visually-hidden';
  summary.setAttribute('aria-live', 'off');
  const box = document.createElement('div');
  box.className = 'chart';
  box.setAttribute('role', 'img');
  box.setAttribute('aria-label', title);
  el.append(box, summary);
  const data = [[], ...labels.map(() => [])];
  const colors = [cssVar('--chart1'), cssVar('--chart2'), cssVar('--ok'), cssVar('--bad')];
  const axis = { stroke: cssVar('--fg'), grid: { stroke: cssVar('--line') }, ticks: { stroke: cssVar('--line') } };
  const width = () => Math.max(300, Math.min(box.clientWidth || el.clientWidth || 600, 1300));
  const plot = U ? new U({
    title, width: width(), height: 180,
    series: [{}, ...labels.map((label, i) => ({ label, stroke: colors[i % colors.length], width: 2 }))],
    axes: [axis, { ...axis, values: (u, ticks) => ticks.map((v) => `${v}${unit}`) }],
    scales: { x: { time: true } },
  }, data, box) : null;
  return {
    push(t, values) {
      data[0].push(t);
      values.forEach((v, i) => data[i + 1].push(v ?? null));
      if (data[0].length > MAX_POINTS) data.forEach((s) => s.shift());
      if (plot) {
        plot.setData(data);
        // One point alone would spread the axis over years: show the last minute.
        if (data[0].length === 1) plot.setScale('x', { min: t - 60, max: t + 1 });
      }
      box.dataset.points = String(data[0].length);
      summary.textContent = `${title}: ${labels.map((l, i) => `${l} ${values[i] ?? '—'}${unit}`).join(', ')}`;
    },
    destroy() { if (plot) plot.destroy(); },
  };
}
