// The chart validates values with JSON Schema, which cannot import @waggle/crds: this test keeps
// its copies of the shared vocabulary equal to the one definition.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOG_LEVELS } from '@waggle/crds';
import { describe, expect, it } from 'vitest';

const schema = JSON.parse(
  readFileSync(join(import.meta.dirname, '..', '..', 'charts', 'waggle', 'values.schema.json'), 'utf8'),
) as { properties: Record<string, { properties?: Record<string, { enum?: string[] }> }> };

describe('the chart values schema', () => {
  it('offers exactly the log levels every component accepts', () => {
    const withLogLevel = Object.entries(schema.properties).filter(([, v]) => v.properties?.logLevel);
    expect(withLogLevel.map(([k]) => k).sort()).toEqual(['gateway', 'nodeAgent', 'operator']);
    for (const [, v] of withLogLevel) expect(v.properties?.logLevel?.enum).toEqual([...LOG_LEVELS]);
  });
});
