import { describe, expect, it } from 'vitest';
import { latencyChartSvg } from './latency-chart.ts';

const bars = (svg: string) =>
  [...svg.matchAll(/<rect x="(\d+)" y="[\d.]+" width="([\d.]+)"/g)].map((m) => Number(m[2]));

describe('latencyChartSvg', () => {
  it('draws one bar per series, longer for slower paths, on a log axis that spans them', () => {
    const svg = latencyChartSvg('create latency', [
      { label: 'cold boot', p50: 5000, p95: 6200, n: 3 },
      { label: 'restore', p50: 900, p95: 1100, n: 10 },
      { label: 'warm pool', p50: 35, p95: 80, n: 30 },
    ]);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('<title>create latency</title>'); // its alternative text
    const [cold, restore, warm] = bars(svg);
    expect(cold).toBeGreaterThan(restore as number);
    expect(restore).toBeGreaterThan(warm as number);
    // Ticks cover 10 ms .. 10 s.
    expect(svg).toContain('>10 ms<');
    expect(svg).toContain('>10 s<');
    expect(svg).toContain('warm pool: p50 35 ms, p95 80 ms, n=30');
  });

  it('escapes labels', () => {
    const svg = latencyChartSvg('a <b> & "c"', [{ label: '<x>', p50: 1, p95: 2, n: 1 }]);
    expect(svg).toContain('a &lt;b&gt; &amp; &quot;c&quot;');
    expect(svg).not.toContain('<x>');
  });

  it('refuses a series without measurements instead of drawing a misleading bar', () => {
    expect(() => latencyChartSvg('t', [{ label: 'none', p50: Number.NaN, p95: 1, n: 0 }])).toThrow(/none/);
    expect(() => latencyChartSvg('t', [])).toThrow(/no series/);
  });
});
