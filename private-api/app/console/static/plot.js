// Charts with the vendored uPlot (window.uPlot): zoom by dragging, double click to reset, click a
// legend entry to hide or show its series.

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#7f7f7f", "#bcbd22", "#393b79", "#ad494a"];

export function color(index) {
  return PALETTE[index % PALETTE.length];
}

// A result column as numbers (booleans as 0/1); null if it is not numeric.
export function numericColumn(values) {
  if (!values.some((v) => typeof v === "number" || typeof v === "boolean")) return null;
  return values.map((v) => (typeof v === "boolean" ? Number(v) : typeof v === "number" ? v : null));
}

function sizeOf(container, height) {
  return { width: Math.max(280, Math.floor(container.clientWidth || 640)), height };
}

function mount(container, options, data) {
  container.replaceChildren();
  const chart = new window.uPlot({ ...options, ...sizeOf(container, options.height) }, data, container);
  let shown = container.isConnected;
  const observer = new ResizeObserver(() => {
    shown ||= container.isConnected;
    if (shown && !container.isConnected) {
      observer.disconnect();
      chart.destroy();
      return;
    }
    chart.setSize(sizeOf(container, options.height));
  });
  observer.observe(container);
  return chart;
}

const axisStyle = { stroke: "#4b5563", grid: { stroke: "#e5e7eb", width: 1 }, ticks: { stroke: "#d1d5db", width: 1 } };

// Time series sharing one x column: series = [{label, values}].
export function linePlot(container, { x, xLabel = "time", series, height = 340, legend = true }) {
  const options = {
    height,
    scales: { x: { time: false } },
    legend: { show: legend, live: true },
    cursor: { drag: { x: true, y: false, setScale: true } },
    series: [{ label: xLabel }, ...series.map((s, i) => ({
      label: s.label, stroke: s.color || color(i), width: 1.5, spanGaps: true, points: { show: false },
    }))],
    axes: [{ ...axisStyle, label: xLabel }, { ...axisStyle, size: 64 }],
  };
  return mount(container, options, [x, ...series.map((s) => s.values)]);
}

// Time series on different x columns (a sweep's children), aligned with uPlot.join.
export function overlayPlot(container, { xLabel = "time", series, height = 340 }) {
  const joined = window.uPlot.join(series.map((s) => [s.x, s.values]));
  const [x, ...columns] = joined;
  return linePlot(container, { x, xLabel, height, legend: series.length <= 16,
    series: series.map((s, i) => ({ label: s.label, values: columns[i], color: color(i) })) });
}

// Points only: y against x, sorted by x as uPlot expects.
export function scatterPlot(container, { xLabel, yLabel, points, height = 300 }) {
  const sorted = points.filter(([px, py]) => Number.isFinite(px) && Number.isFinite(py)).sort((a, b) => a[0] - b[0]);
  const options = {
    height,
    scales: { x: { time: false } },
    legend: { show: true, live: true },
    cursor: { drag: { x: true, y: true, uni: 20, setScale: true } },
    series: [{ label: xLabel }, {
      label: yLabel, stroke: color(0), fill: "rgba(31,119,180,0.35)", paths: () => null,
      points: { show: true, size: 8, width: 1.5, stroke: color(0), fill: "rgba(31,119,180,0.35)" },
    }],
    axes: [{ ...axisStyle, label: xLabel }, { ...axisStyle, size: 64, label: yLabel }],
  };
  return mount(container, options, [sorted.map((p) => p[0]), sorted.map((p) => p[1])]);
}
