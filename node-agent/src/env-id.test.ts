import { describe, expect, it } from 'vitest';
import { ENV_ID_HEADER, formatEnvId, MAX_ENV_ID_LENGTH, parseEnvId, withEnvId } from './env-id.ts';

describe('environment ids', () => {
  it('takes ids in the shape of Kubernetes names, up to their length', () => {
    expect(parseEnvId(formatEnvId('team-a', 'env-1'))).toBe('team-a/env-1');
    expect(parseEnvId(`${'n'.repeat(63)}/${'e'.repeat(253)}`)).toHaveLength(MAX_ENV_ID_LENGTH);
  });

  it.each([
    ['nothing', undefined],
    ['empty', ''],
    ['no namespace', 'env-1'],
    ['upper case', 'Team/env'],
    ['a quote (a forged JSON field)', 'team/env","level":60'],
    ['a line break (a forged line)', 'team/env\n{"msg":"x"}'],
    ['two slashes', 'team/a/b'],
    ['a namespace too long', `${'n'.repeat(64)}/env`],
    ['a name too long', `team/${'e'.repeat(254)}`],
  ])('refuses %s', (_why, raw) => {
    expect(parseEnvId(raw)).toBeUndefined();
  });

  it('sends the id with every call, keeping the call’s own headers and options', async () => {
    const seen: Array<{ input: unknown; opts: { headers: Headers; timeoutMs?: number } }> = [];
    const client = {
      endpoint: 'http://agent',
      async getVM(input: unknown, opts: { headers: Headers; timeoutMs?: number }) {
        seen.push({ input, opts });
        return 'ok';
      },
    };
    const wrapped = withEnvId(client, 'team-a/env-1');
    expect(wrapped.endpoint).toBe('http://agent');
    expect(
      await wrapped.getVM({ vmId: 'u1' }, { headers: new Headers({ 'x-other': '1' }), timeoutMs: 5 }),
    ).toBe('ok');
    const [call] = seen;
    expect(call?.input).toEqual({ vmId: 'u1' });
    expect(call?.opts.timeoutMs).toBe(5);
    expect(call?.opts.headers.get(ENV_ID_HEADER)).toBe('team-a/env-1');
    expect(call?.opts.headers.get('x-other')).toBe('1');
  });

  it('leaves a malformed id out rather than fail the call', () => {
    const client = { getVM: async () => 'ok' };
    expect(withEnvId(client, 'Bad Id')).toBe(client);
  });
});
