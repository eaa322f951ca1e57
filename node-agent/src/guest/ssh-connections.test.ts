import { type AddressInfo, createServer, type Server } from 'node:net';
import ssh2 from 'ssh2';
import { afterEach, describe, expect, it } from 'vitest';
import { GuestUnavailableError } from '../errors.ts';
import { createLogger } from '../logger.ts';
import { generateEcdsaKeyPair } from '../vm/keys.ts';
import { connectionUser, GuestConnections, RECONNECT_BACKOFF_MS, runCommand } from './ssh-connections.ts';

const log = createLogger({ level: 'silent' });
const hostKey = generateEcdsaKeyPair('host');
const clientKey = generateEcdsaKeyPair('client');
const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

async function listen(server: Server | ssh2.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  closers.push(() => server.close());
  return (server.address() as AddressInfo).port;
}

const connections = (port: number, readyTimeoutMs = 5_000) =>
  new GuestConnections({
    log,
    readyTimeoutMs,
    resolve: async () => ({
      host: '127.0.0.1',
      port,
      username: 'root',
      privateKey: clientKey.privateKey,
      hostPublicKey: hostKey.publicKey,
    }),
  });

/** An SSH server that accepts the client key for any user and runs `exec` requests as echo. */
function sshServer(onSession: (user: string) => void): ssh2.Server {
  return new ssh2.Server({ hostKeys: [hostKey.privateKey] }, (client) => {
    let user = '';
    client.on('error', () => undefined);
    client.on('authentication', (ctx) => {
      user = ctx.username;
      if (ctx.method === 'publickey') ctx.accept();
      else ctx.reject(['publickey']);
    });
    client.on('ready', () => {
      onSession(user);
      client.on('session', (accept) => {
        accept().on('exec', (acceptExec, _reject, info) => {
          const ch = acceptExec();
          ch.write(`${user}:${info.command}`);
          ch.exit(0);
          ch.end();
        });
      });
    });
  });
}

describe('GuestConnections against a hostile or broken guest', () => {
  it('a connection reset before the handshake is a GuestUnavailableError, not an unhandled error', async () => {
    // A reset socket makes ssh2 emit two errors (ECONNRESET, then "Connection lost before
    // handshake"); the second one used to be unhandled and kill the process.
    const uncaught: Error[] = [];
    const onUncaught = (e: Error) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      // Reset once the client is connected (and waits for the server's SSH banner).
      const port = await listen(createServer((sock) => setTimeout(() => sock.resetAndDestroy(), 100)));
      const conns = connections(port);
      const err = await conns.get('vm-1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GuestUnavailableError);
      expect((err as Error).message).toMatch(/cannot reach VM vm-1 over SSH/);
      // Give ssh2 time to emit whatever else it has for that socket.
      await new Promise((r) => setTimeout(r, 1_000));
      conns.closeAll();
      expect(uncaught.map((e) => e.message)).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  it('garbage instead of an SSH server, or silence, fails within the ready timeout', async () => {
    const garbage = await listen(createServer((sock) => sock.end('HTTP/1.1 400 Bad Request\r\n\r\n')));
    await expect(connections(garbage).get('vm-g')).rejects.toBeInstanceOf(GuestUnavailableError);
    const silent = await listen(createServer(() => undefined));
    const t0 = Date.now();
    await expect(connections(silent, 1_000).get('vm-s')).rejects.toBeInstanceOf(GuestUnavailableError);
    expect(Date.now() - t0).toBeLessThan(7_000);
  });

  it('backs off between reconnects after failures (no tight loop)', async () => {
    let accepted = 0;
    const port = await listen(
      createServer((sock) => {
        accepted++;
        sock.resetAndDestroy();
      }),
    );
    const conns = connections(port);
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) await conns.get('vm-b').catch(() => undefined);
    // 3 attempts: immediately, after min, after 2 × min.
    expect(accepted).toBe(3);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3 * RECONNECT_BACKOFF_MS.min - 50);
    conns.closeAll();
  });

  it('keeps one connection per VM and user, and re-opens one that dropped', async () => {
    const sessions: string[] = [];
    const server = sshServer((user) => sessions.push(user));
    const port = await listen(server);
    const conns = connections(port);
    const root = await conns.get('vm-u');
    const sandbox = await conns.get('vm-u', 'sandbox');
    expect(root).not.toBe(sandbox);
    expect(await conns.get('vm-u')).toBe(root);
    expect(await conns.get('vm-u', 'sandbox')).toBe(sandbox);
    expect([connectionUser(root), connectionUser(sandbox)]).toEqual(['root', 'sandbox']);
    expect(sessions.sort()).toEqual(['root', 'sandbox']);
    expect((await runCommand(sandbox, 'id')).stdout.toString()).toBe('sandbox:id');

    // The connection drops (the guest's sshd went away): the next get opens a new one.
    const closed = new Promise((r) => sandbox.once('close', () => r(undefined)));
    sandbox.destroy();
    await closed;
    const again = await conns.get('vm-u', 'sandbox');
    expect(again).not.toBe(sandbox);
    expect((await runCommand(again, 'x')).stdout.toString()).toBe('sandbox:x');

    // A command on a dead connection is a GuestUnavailableError, not a throw or a hang.
    await expect(runCommand(sandbox, 'x')).rejects.toBeInstanceOf(GuestUnavailableError);
    conns.close('vm-u');
    await new Promise((r) => root.once('close', () => r(undefined)));
  });
});
