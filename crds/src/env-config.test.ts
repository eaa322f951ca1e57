import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { durationMsSchema } from './duration.ts';
import { logRenamedVariables, parseEnvConfig, renamedVariablesSet } from './env-config.ts';

const schema = z.object({
  PORT: z.coerce.number().int().min(1).default(8080),
  TIMEOUT: durationMsSchema.default(30_000),
});

describe('parseEnvConfig', () => {
  it('applies defaults and treats empty variables as unset', () => {
    expect(parseEnvConfig(schema, { PORT: '', TIMEOUT: '2m', OTHER: 'x' }, 'test')).toEqual({
      PORT: 8080,
      TIMEOUT: 120_000,
    });
  });

  it('names every bad variable, its value and the fix, with the component', () => {
    class ConfigError extends Error {}
    const err = (() => {
      try {
        parseEnvConfig(schema, { PORT: '0', TIMEOUT: 'soon' }, 'demo', (m) => new ConfigError(m));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/^invalid demo configuration:\n/);
    expect((err as Error).message).toContain('PORT="0"');
    expect((err as Error).message).toMatch(/TIMEOUT="soon": use a duration such as "30s"/);
  });
});

describe('renamed variables', () => {
  const renamed = [{ old: 'OLD_TIMEOUT', current: 'TIMEOUT' }];

  it('reads a variable set only under its old name as its current name', () => {
    expect(parseEnvConfig(schema, { OLD_TIMEOUT: '5m' }, 'test', undefined, renamed).TIMEOUT).toBe(300_000);
  });

  it('prefers the current name when both are set', () => {
    expect(
      parseEnvConfig(schema, { OLD_TIMEOUT: '5m', TIMEOUT: '1m' }, 'test', undefined, renamed).TIMEOUT,
    ).toBe(60_000);
  });

  it('says which name a bad value was set under', () => {
    expect(() => parseEnvConfig(schema, { OLD_TIMEOUT: 'soon' }, 'demo', undefined, renamed)).toThrow(
      /TIMEOUT="soon" \(set as OLD_TIMEOUT\): use a duration/,
    );
  });

  it('lists and warns about the old names still set, and about nothing else', () => {
    expect(renamedVariablesSet({ TIMEOUT: '1m' }, renamed)).toEqual([]);
    expect(renamedVariablesSet({ OLD_TIMEOUT: '' }, renamed)).toEqual([]);
    const warnings: Array<[object, string]> = [];
    logRenamedVariables({ warn: (o, m) => warnings.push([o, m]) }, { OLD_TIMEOUT: '5m' }, renamed);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.[0]).toMatchObject({ variable: 'OLD_TIMEOUT', renamedTo: 'TIMEOUT' });
    expect(warnings[0]?.[1]).toMatch(/deprecated/);
  });
});
