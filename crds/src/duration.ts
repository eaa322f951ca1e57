import { z } from 'zod';

/**
 * Durations use Go's `time.Duration` string form restricted to the units that make sense for
 * environment lifetimes: `ms`, `s`, `m`, `h` (e.g. `30m`, `1h30m`, `90s`, `1.5h`). CEL's
 * `duration()` understands the same form, so the CRD can compare durations server-side.
 */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';

const DURATION_RE = new RegExp(DURATION_PATTERN);
const PART_RE = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

export class InvalidDurationError extends Error {
  override name = 'InvalidDurationError';
  readonly input: string;
  constructor(input: string) {
    super(
      `invalid duration ${JSON.stringify(input)}: use a number followed by ms, s, m or h, e.g. "30s", "15m", "1h30m"`,
    );
    this.input = input;
  }
}

/** Parses a duration string (see {@link DURATION_PATTERN}) into milliseconds. */
export function parseDuration(input: string): number {
  if (!DURATION_RE.test(input)) throw new InvalidDurationError(input);
  let total = 0;
  for (const match of input.matchAll(PART_RE)) {
    const [, value, unit] = match;
    total += Number(value) * (UNIT_MS[unit as string] as number);
  }
  return Math.round(total);
}

/** Formats milliseconds as the shortest duration string that parses back to the same value. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`cannot format duration ${ms}`);
  if (ms === 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
    ['ms', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}

/** A zod schema for a duration string with an inclusive range, mirrored as CEL in the CRD. */
export function durationSchema(opts: { min: string; max: string; description: string }) {
  const minMs = parseDuration(opts.min);
  const maxMs = parseDuration(opts.max);
  return z
    .string()
    .regex(DURATION_RE, { error: 'must be a duration such as "30s", "15m" or "1h30m" (units: ms, s, m, h)' })
    .refine((v) => !DURATION_RE.test(v) || (parseDuration(v) >= minMs && parseDuration(v) <= maxMs), {
      error: `must be between ${opts.min} and ${opts.max}`,
    })
    .meta({
      description: opts.description,
      'x-kubernetes-validations': [
        {
          rule: `duration(self) >= duration('${opts.min}') && duration(self) <= duration('${opts.max}')`,
          message: `must be between ${opts.min} and ${opts.max}`,
        },
      ],
    });
}

/** A duration string parsed to milliseconds (for configuration from the environment). */
export const durationMsSchema = z
  .string()
  .regex(DURATION_RE, { error: 'use a duration such as "30s", "5m" or "1h30m" (units: ms, s, m, h)' })
  .transform(parseDuration);
