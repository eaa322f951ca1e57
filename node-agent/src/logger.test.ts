import { describe, expect, it } from 'vitest';
import { createLogger, EnvIds } from './logger.ts';

function capture(envIds?: EnvIds) {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({
    level: 'debug',
    ...(envIds ? { envIds } : {}),
    destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
  });
  return { log, lines };
}

describe('the environment id on lines about a VM', () => {
  it('is added to a line whose vmId field or binding names a VM of a known environment', () => {
    const envIds = new EnvIds();
    envIds.remember('uid-1', 'team-a/env-1');
    const { log, lines } = capture(envIds);
    log.info({ vmId: 'uid-1' }, 'vm exited');
    log.child({ vmId: 'uid-1' }).warn({ err: 'x' }, 'ssh connection error; dropping it');
    log.info({ vmId: 'uid-2' }, 'vm exited');
    log.info({ node: 'n1' }, 'heartbeat failed');
    expect(lines.map((l) => l.envId)).toEqual(['team-a/env-1', 'team-a/env-1', undefined, undefined]);
  });

  it('is never doubled where a line already names its environment', () => {
    const envIds = new EnvIds();
    envIds.remember('uid-1', 'team-a/env-1');
    const { log, lines } = capture(envIds);
    log.child({ vmId: 'uid-1', envId: 'team-a/env-1' }).info('rpc failed');
    log.info({ vmId: 'uid-1', envId: 'team-a/env-1' }, 'x');
    for (const raw of lines) expect(raw.envId).toBe('team-a/env-1');
    // A duplicated key would show in the serialized line, not the parsed object.
    const text: string[] = [];
    const plain = createLogger({ envIds, destination: { write: (s: string) => void text.push(s) } });
    plain.child({ vmId: 'uid-1', envId: 'team-a/env-1' }).info('rpc failed');
    expect(text[0]?.match(/"envId"/g)).toHaveLength(1);
  });

  it('is remembered for a bounded number of VMs, the oldest forgotten first', () => {
    const envIds = new EnvIds(2);
    envIds.remember('a', 'ns/a');
    envIds.remember('b', 'ns/b');
    envIds.remember('c', 'ns/c');
    expect([envIds.get('a'), envIds.get('b'), envIds.get('c')]).toEqual([undefined, 'ns/b', 'ns/c']);
    envIds.remember('b', 'ns/b'); // seen again: the newest
    envIds.remember('d', 'ns/d');
    expect([envIds.get('b'), envIds.get('c'), envIds.get('d')]).toEqual(['ns/b', undefined, 'ns/d']);
  });
});
