import { describe, expect, it } from 'vitest';
import { MAX_CODE_CHARS, maxCallBodyBytes } from './schemas.ts';

const envelope = (args: Record<string, unknown>) =>
  Buffer.byteLength(
    JSON.stringify({
      jsonrpc: '2.0',
      id: 12_345,
      method: 'tools/call',
      params: { name: 'write_file', arguments: args, _meta: { progressToken: 'p-1' } },
    }),
  );

describe('maxCallBodyBytes', () => {
  it('fits the largest legal write_file (base64) and execute, and not much more', () => {
    const max = 10 * 1024 * 1024;
    const limit = maxCallBodyBytes(max);
    const content = Buffer.alloc(max, 0xff).toString('base64');
    const write = envelope({
      environment_id: `env-${'a'.repeat(59)}`,
      path: `/home/sandbox/${'\u0001'.repeat(4096 - 14)}`,
      content,
      encoding: 'base64',
    });
    expect(write).toBeLessThanOrEqual(limit);
    const code = envelope({ environment_id: 'env-x', code: '\u0001'.repeat(MAX_CODE_CHARS) });
    expect(code).toBeLessThanOrEqual(limit);
    expect(limit - write).toBeLessThan(128 * 1024);
  });

  it('follows WAGGLE_MAX_FILE_BYTES, never below the largest execute', () => {
    expect(maxCallBodyBytes(20 * 1024 * 1024)).toBeGreaterThan(maxCallBodyBytes(10 * 1024 * 1024));
    expect(maxCallBodyBytes(1)).toBeGreaterThanOrEqual(MAX_CODE_CHARS * 6);
  });
});
