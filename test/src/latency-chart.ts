// An SVG chart of latencies for docs/benchmarks.md, drawn by the benchmarks themselves (no
// plotting dependency): one horizontal bar per measurement from 0 to p50, a whisker to p95, on a
// logarithmic axis so that tens of milliseconds and seconds fit in one picture.

export interface LatencySeries {
  label: string;
  p50: number;
  p95: number;
  n: number;
  /** Bar colour (any SVG colour); a neutral one if unset. */
  colour?: string;
}

const WIDTH = 760;
const ROW = 34;
const LEFT = 250;
const RIGHT = 40;
const TOP = 48;
const BOTTOM = 44;

const escapeXml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const fmt = (ms: number) =>
  ms >= 1000 ? `${(ms / 1000).toFixed(ms >= 10_000 ? 0 : 1)} s` : `${Math.round(ms)} ms`;

/** Decades from 10^floor(log10(min)) to 10^ceil(log10(max)), at least one. */
function decades(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(Math.max(1, min)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(1, max))));
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) ticks.push(10 ** e);
  return ticks;
}

/** The chart as a standalone SVG document. Throws on a series without finite, positive numbers. */
export function latencyChartSvg(title: string, series: readonly LatencySeries[]): string {
  if (series.length === 0) throw new Error('latency chart: no series');
  for (const s of series) {
    if (!(s.p50 > 0 && s.p95 > 0 && Number.isFinite(s.p50) && Number.isFinite(s.p95))) {
      throw new Error(`latency chart: "${s.label}" has no positive p50/p95 (${s.p50}/${s.p95})`);
    }
  }
  const ticks = decades(Math.min(...series.map((s) => s.p50)), Math.max(...series.map((s) => s.p95)));
  const lo = Math.log10(ticks[0] as number);
  const hi = Math.log10(ticks[ticks.length - 1] as number);
  const plotW = WIDTH - LEFT - RIGHT;
  const x = (ms: number) => LEFT + ((Math.log10(Math.max(ms, 10 ** lo)) - lo) / (hi - lo)) * plotW;
  const height = TOP + series.length * ROW + BOTTOM;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  for (const t of ticks) {
    const tx = x(t).toFixed(1);
    parts.push(
      `<line x1="${tx}" y1="${TOP - 6}" x2="${tx}" y2="${TOP + series.length * ROW}" stroke="#dddddd"/>`,
      `<text x="${tx}" y="${TOP + series.length * ROW + 18}" text-anchor="middle" fill="#555555">${fmt(t)}</text>`,
    );
  }
  series.forEach((s, i) => {
    const y = TOP + i * ROW;
    const bar = (x(s.p50) - LEFT).toFixed(1);
    const colour = s.colour ?? '#4c78a8';
    parts.push(
      `<text x="${LEFT - 8}" y="${y + ROW / 2 + 4}" text-anchor="end">${escapeXml(s.label)}</text>`,
      `<rect x="${LEFT}" y="${y + 7}" width="${bar}" height="${ROW - 14}" fill="${colour}"><title>${escapeXml(`${s.label}: p50 ${fmt(s.p50)}, p95 ${fmt(s.p95)}, n=${s.n}`)}</title></rect>`,
      `<line x1="${x(s.p50).toFixed(1)}" y1="${y + ROW / 2}" x2="${x(s.p95).toFixed(1)}" y2="${y + ROW / 2}" stroke="#333333"/>`,
      `<line x1="${x(s.p95).toFixed(1)}" y1="${y + 10}" x2="${x(s.p95).toFixed(1)}" y2="${y + ROW - 10}" stroke="#333333"/>`,
      `<text x="${Math.min(x(s.p95) + 6, WIDTH - RIGHT).toFixed(1)}" y="${y + ROW / 2 + 4}" fill="#333333">${fmt(s.p50)}</text>`,
    );
  });
  parts.push(
    `<text x="${LEFT + plotW / 2}" y="${height - 8}" text-anchor="middle" fill="#555555">bar: p50, whisker: p95 (log scale)</text>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}
