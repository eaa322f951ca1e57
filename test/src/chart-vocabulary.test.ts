// The chart validates values with JSON Schema and sets defaults in values.yaml, neither of which
// can import @waggle/crds: this test keeps their copies of the shared vocabulary and of the create
// deadlines equal to the one definition.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ACCELERATORS, CREATE_DEADLINE_DEFAULTS, LOG_LEVELS, parseDuration, RUNTIMES } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const chart = join(import.meta.dirname, '..', '..', 'charts', 'waggle');
type Props = Record<string, { enum?: string[]; items?: { enum?: string[] }; properties?: Props }>;
const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8')) as { properties: Props };
const values = parse(readFileSync(join(chart, 'values.yaml'), 'utf8')) as Record<
  string,
  Record<string, unknown>
>;

describe('the chart values schema', () => {
  it('offers exactly the log levels every component accepts', () => {
    const withLogLevel = Object.entries(schema.properties).filter(([, v]) => v.properties?.logLevel);
    expect(withLogLevel.map(([k]) => k).sort()).toEqual(['gateway', 'nodeAgent', 'operator']);
    for (const [, v] of withLogLevel) expect(v.properties?.logLevel?.enum).toEqual([...LOG_LEVELS]);
  });

  it("offers exactly the API's runtimes and accelerators", () => {
    const agent = schema.properties.nodeAgent?.properties;
    expect(agent?.runtimes?.items?.enum).toEqual([...RUNTIMES]);
    expect(agent?.accelerator?.enum).toEqual(['auto', ...ACCELERATORS]);
  });
});

describe('the chart values', () => {
  it('default the create deadlines to the components’ defaults', () => {
    const ms = (v: unknown) => parseDuration(String(v));
    expect(ms(values.nodeAgent?.bootTimeout)).toBe(CREATE_DEADLINE_DEFAULTS.guestBootMs);
    expect(ms(values.operator?.createVMTimeout)).toBe(CREATE_DEADLINE_DEFAULTS.createVMMs);
    expect(ms(values.gateway?.createWaitTimeout)).toBe(CREATE_DEADLINE_DEFAULTS.createWaitMs);
  });
});
