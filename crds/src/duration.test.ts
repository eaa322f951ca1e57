import { describe, expect, it } from 'vitest';
import { formatDuration, InvalidDurationError, parseDuration } from './duration.ts';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['90s', 90_000],
    ['30m', 1_800_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['2h0m5s', 7_205_000],
  ])('parses %s', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(['', '30', 'm', '5d', '-5s', '1h 30m', 'abc', '5S', '1e3s'])('rejects %j with a hint', (input) => {
    expect(() => parseDuration(input)).toThrow(InvalidDurationError);
    expect(() => parseDuration(input)).toThrow(/e\.g\. "30s"/);
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [1, '1ms'],
    [1_800_000, '30m'],
    [5_400_000, '1h30m'],
    [7_205_250, '2h5s250ms'],
  ])('formats %d as %s and round-trips', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
    expect(parseDuration(text)).toBe(ms);
  });

  it('refuses negative durations', () => {
    expect(() => formatDuration(-1)).toThrow(RangeError);
  });
});
