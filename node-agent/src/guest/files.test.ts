import type { AddressInfo } from 'node:net';
import ssh2, { type Client, type SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GuestFileError, GuestUnavailableError } from '../errors.ts';
import { createLogger } from '../logger.ts';
import { generateEcdsaKeyPair } from '../vm/keys.ts';
import { listGuestFiles, readGuestFile } from './files.ts';
import { GuestConnections } from './ssh-connections.ts';

// A scripted SFTP server standing in for a hostile guest: each test sets what a path is and how
// the server answers, and the tests check what the agent asks for and how it gives up.
const { STATUS_CODE } = ssh2.utils.sftp;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;
const attrs = (type: number, size = 0) => ({
  mode: type | 0o644,
  uid: 1000,
  gid: 1000,
  size,
  atime: 0,
  mtime: 0,
});

interface Fake {
  /** realpath answers (default: the path itself). */
  real: Map<string, string>;
  /** stat answers by path. */
  stat: Map<string, ReturnType<typeof attrs>>;
  /** What fstat of an open handle says (default: the path's stat). */
  fstat?: ReturnType<typeof attrs>;
  /** Paths whose OPEN is never answered (a FIFO in the guest). */
  hangOpen: Set<string>;
  /** Bytes per READ reply; a file that never ends when `endless`. */
  endless: boolean;
  content: Buffer;
  /** Entries per READDIR reply, forever. */
  dirBatch: number;
  served: number;
  readdirs: number;
  sessions: number;
}
let fake: Fake;
beforeEach(() => {
  fake = {
    real: new Map(),
    stat: new Map(),
    hangOpen: new Set(),
    endless: false,
    content: Buffer.alloc(0),
    dirBatch: 100,
    served: 0,
    readdirs: 0,
    sessions: 0,
  };
});

function serveSftp(sftp: SFTPWrapper): void {
  const handles = new Map<string, string>();
  const handleOf = (path: string) => {
    const h = Buffer.from(String(handles.size));
    handles.set(h.toString(), path);
    return h;
  };
  sftp.on('REALPATH', (id, path) => {
    const real = fake.real.get(path) ?? path;
    sftp.name(id, [{ filename: real, longname: real, attrs: {} as never }]);
  });
  sftp.on('STAT', (id, path) => {
    const st = fake.stat.get(path);
    if (st) sftp.attrs(id, st);
    else sftp.status(id, STATUS_CODE.NO_SUCH_FILE);
  });
  sftp.on('OPEN', (id, path) => {
    if (fake.hangOpen.has(path)) return;
    sftp.handle(id, handleOf(path));
  });
  sftp.on('FSTAT', (id, handle) => {
    sftp.attrs(id, fake.fstat ?? fake.stat.get(handles.get(handle.toString()) ?? '') ?? attrs(S_IFREG));
  });
  sftp.on('READ', (id, _handle, offset, length) => {
    if (!fake.endless && offset >= fake.content.length) return sftp.status(id, STATUS_CODE.EOF);
    const chunk = fake.endless
      ? Buffer.alloc(Math.min(length, 32_000), 0x61)
      : fake.content.subarray(offset, offset + Math.min(length, 32_000));
    fake.served += chunk.length;
    sftp.data(id, chunk);
  });
  sftp.on('OPENDIR', (id, path) => sftp.handle(id, handleOf(path)));
  sftp.on('READDIR', (id) => {
    const start = fake.readdirs++ * fake.dirBatch;
    sftp.name(
      id,
      Array.from({ length: fake.dirBatch }, (_, i) => ({
        filename: `f${start + i}`,
        longname: `f${start + i}`,
        attrs: attrs(S_IFREG, 1) as never,
      })),
    );
  });
  sftp.on('CLOSE', (id) => sftp.status(id, STATUS_CODE.OK));
}

const hostKey = generateEcdsaKeyPair('host');
const clientKey = generateEcdsaKeyPair('client');
let server: ssh2.Server;
let conns: GuestConnections;
let client: Client;

beforeAll(async () => {
  server = new ssh2.Server({ hostKeys: [hostKey.privateKey] }, (c) => {
    c.on('error', () => undefined);
    c.on('authentication', (ctx) => ctx.accept());
    c.on('ready', () =>
      c.on('session', (accept) =>
        accept().on('sftp', (acceptSftp) => {
          fake.sessions++;
          serveSftp(acceptSftp());
        }),
      ),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  conns = new GuestConnections({
    log: createLogger({ level: 'silent' }),
    resolve: async () => ({
      host: '127.0.0.1',
      port: (server.address() as AddressInfo).port,
      username: 'sandbox',
      privateKey: clientKey.privateKey,
      hostPublicKey: hostKey.publicKey,
    }),
  });
  client = await conns.get('vm-f');
});

afterAll(() => {
  conns?.closeAll();
  server?.close();
});

/** The error a read fails with (a read that succeeds is an error of its own). */
const read = (path: string, maxBytes = 1000): Promise<Error> =>
  readGuestFile(client, path, { maxBytes, requestTimeoutMs: 500 }).then(
    () => new Error(`reading ${path} succeeded`),
    (e: unknown) => e as Error,
  );

describe('file tools against a hostile guest (scripted SFTP server)', () => {
  it('refuses a path whose real path leaves the sandbox, before opening anything', async () => {
    fake.real.set('/home/sandbox/s', '/etc/shadow');
    fake.stat.set('/etc/shadow', attrs(S_IFREG, 10));
    const err = await read('s');
    expect(err).toBeInstanceOf(GuestFileError);
    expect(err).toMatchObject({ code: 'outside_sandbox' });
    expect(err.message).toMatch(/\/home\/sandbox\/s leads .* to \/etc\/shadow, outside the sandbox/);
    expect(fake.served).toBe(0);
  });

  it('refuses FIFOs and devices, also when one is swapped in between the stat and the open', async () => {
    fake.stat.set('/home/sandbox/p', attrs(S_IFIFO));
    expect(await read('p')).toMatchObject({
      code: 'not_regular_file',
      message: '/home/sandbox/p is a FIFO (named pipe), not a regular file',
    });
    fake.stat.set('/home/sandbox/z', attrs(S_IFREG, 0));
    fake.fstat = attrs(S_IFCHR);
    expect(await read('z')).toMatchObject({
      code: 'not_regular_file',
      message: '/home/sandbox/z is a character device, not a regular file',
    });
    expect(fake.served).toBe(0);
  });

  it('reads at most maxBytes + 1 bytes of a file that grows while being read', async () => {
    fake.stat.set('/home/sandbox/grows', attrs(S_IFREG, 10));
    fake.endless = true;
    const err = await read('grows', 100_000);
    expect(err).toMatchObject({ code: 'too_large' });
    expect(err.message).toMatch(/grew past the read limit of 100000 bytes/);
    expect(fake.served).toBeLessThanOrEqual(100_001);
  });

  it('reads a regular file exactly', async () => {
    fake.content = Buffer.from('x'.repeat(70_000));
    fake.stat.set('/home/sandbox/ok', attrs(S_IFREG, fake.content.length));
    const r = await readGuestFile(client, 'ok', { maxBytes: 100_000 });
    expect(r.data.equals(fake.content)).toBe(true);
  });

  it('gives up on an open that never answers, resets the SFTP session, and works again after', async () => {
    fake.content = Buffer.from('fine');
    fake.stat.set('/home/sandbox/ok', attrs(S_IFREG, 4));
    await readGuestFile(client, 'ok', { maxBytes: 100 });
    fake.stat.set('/home/sandbox/fifo-later', attrs(S_IFREG, 1));
    fake.hangOpen.add('/home/sandbox/fifo-later');
    const before = fake.sessions;
    const t0 = Date.now();
    const err = await read('fifo-later');
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(err).toMatchObject({ code: 'timed_out' });
    expect(err.message).toMatch(/did not answer within 0.5 s .*FIFO.*; the file session was reset/);
    expect((await readGuestFile(client, 'ok', { maxBytes: 100 })).data.toString()).toBe('fine');
    expect(fake.sessions).toBe(before + 1);
  });

  it('lists at most maxEntries (+1 to know) of a huge directory and says it is truncated', async () => {
    fake.stat.set('/home/sandbox/huge', attrs(S_IFDIR));
    const r = await listGuestFiles(client, 'huge', { maxEntries: 250 });
    expect(r.truncated).toBe(true);
    expect(r.entries).toHaveLength(250);
    expect(fake.readdirs).toBe(3);
  });

  it('a connection that is gone is a GuestUnavailableError', async () => {
    const c = await conns.get('vm-gone');
    c.destroy();
    await new Promise((r) => setTimeout(r, 50));
    await expect(readGuestFile(c, 'ok', { maxBytes: 10 })).rejects.toBeInstanceOf(GuestUnavailableError);
  });
});
