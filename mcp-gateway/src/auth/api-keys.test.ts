import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiKeyAuthenticator, parseApiKeys } from './api-keys.ts';

const KEY = 'k'.repeat(32);

describe('API keys', () => {
  it('parses clear and hashed keys', () => {
    const sha = createHash('sha256').update('h'.repeat(30)).digest('hex');
    const keys = parseApiKeys(
      `keys:\n  - {name: a, namespace: team-a, key: ${KEY}}\n  - {name: b, namespace: team-b, sha256: ${sha}}\n`,
      'f',
    );
    expect(keys.map((k) => [k.name, k.namespace])).toEqual([
      ['a', 'team-a'],
      ['b', 'team-b'],
    ]);
  });

  it('rejects a bad file with every problem named', () => {
    expect(() => parseApiKeys('keys:\n  - {name: a, namespace: Team_A, key: short}\n', 'keys.yaml')).toThrow(
      /invalid API keys file keys.yaml:\n {2}keys.0.namespace: must be a Kubernetes namespace name\n {2}keys.0.key: API keys must be at least 24 characters/,
    );
    expect(() => parseApiKeys('keys:\n  - {name: a, namespace: a}\n', 'f')).toThrow(
      /exactly one of "key" or "sha256"/,
    );
    expect(() =>
      parseApiKeys(
        `keys:\n  - {name: a, namespace: a, key: ${KEY}}\n  - {name: a, namespace: b, key: ${KEY}x}\n`,
        'f',
      ),
    ).toThrow(/duplicate key name "a"/);
  });

  it('maps a key to its caller and namespace, refuses another namespace, and reloads on change', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keys-'));
    try {
      const file = join(dir, 'keys.yaml');
      await writeFile(file, `keys:\n  - {name: bot, namespace: team-a, key: ${KEY}}\n`);
      const auth = new ApiKeyAuthenticator(file);
      await auth.load();
      expect(await auth.authenticate(KEY, undefined)).toMatchObject({
        principal: 'apikey:bot',
        namespace: 'team-a',
      });
      expect(await auth.authenticate('x'.repeat(32), undefined)).toBeUndefined();
      await expect(auth.authenticate(KEY, 'team-b')).rejects.toThrow(
        /is for namespace "team-a", not "team-b"/,
      );
      await new Promise((r) => setTimeout(r, 20));
      await writeFile(file, `keys:\n  - {name: bot2, namespace: team-c, key: ${KEY}}\n`);
      expect(await auth.authenticate(KEY, undefined)).toMatchObject({
        principal: 'apikey:bot2',
        namespace: 'team-c',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
