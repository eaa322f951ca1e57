import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { grantAgent, TOKEN_AUDIENCE } from './agent-identity.ts';

describe('grantAgent', () => {
  it("mints a token for the chart's default gateway audience", async () => {
    const values = parse(
      await readFile(fileURLToPath(new URL('../../charts/waggle/values.yaml', import.meta.url)), 'utf8'),
    ) as { gateway: { tokenAudiences: string[] } };
    expect(values.gateway.tokenAudiences).toContain(TOKEN_AUDIENCE);

    const calls: string[][] = [];
    const token = await grantAgent(
      async (args) => {
        calls.push(args);
        return args[1] === 'token' ? 'tok\n' : '';
      },
      { namespace: 'team-a', serviceAccount: 'bot', duration: '2h' },
    );
    expect(token).toBe('tok');
    expect(calls.at(-1)).toEqual([
      'create',
      'token',
      'bot',
      '-n',
      'team-a',
      '--audience',
      TOKEN_AUDIENCE,
      '--duration',
      '2h',
    ]);
  });
});
