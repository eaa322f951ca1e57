import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { durationMsSchema } from './duration.ts';
import { parseEnvConfig } from './env-config.ts';

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
