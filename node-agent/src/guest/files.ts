import { posix } from 'node:path';
import type { Logger } from 'pino';
import type { Client, SFTPWrapper, Stats } from 'ssh2';
import { GuestFileError, GuestUnavailableError } from '../errors.ts';
import { SANDBOX_USER } from './exec.ts';
import { ALLOWED_ROOTS, isWithinAllowedRoots, resolveGuestPath } from './paths.ts';
import { connectionUser } from './ssh-connections.ts';

const STATUS = { EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3 } as const;
export type FileType = 'file' | 'directory' | 'symlink' | 'other';

/**
 * The longest any one SFTP request may take. A guest can make a request block forever (a FIFO
 * swapped in after the type check blocks open(2) in the guest's SFTP server); the request then
 * fails with a `timed_out` file error and the connection's SFTP session is reset. Transfers are
 * split into requests of at most TRANSFER_CHUNK bytes, so every file call is bounded in time.
 */
export const SFTP_REQUEST_TIMEOUT_MS = 5_000;
const TRANSFER_CHUNK = 256 * 1024;

export interface FileEntry {
  name: string;
  path: string;
  type: FileType;
  size: number;
  /** Permission bits in octal, e.g. "0644". */
  mode: string;
  /** ISO 8601 modification time. */
  modified: string;
}

interface Session {
  sftp: SFTPWrapper;
  client: Client;
  log: Logger | undefined;
  /** Its entry in `sessions` (while it is the connection's session). */
  entry: Promise<Session>;
}
/** A session as one file call uses it: with that call's request timeout. */
interface Ctx extends Session {
  timeoutMs: number;
}

const sessions = new WeakMap<Client, Promise<Session>>();

/** Forgets a connection's SFTP session and closes its channel (the next call opens a new one). */
function resetSession(s: Session, why: string): void {
  if (sessions.get(s.client) === s.entry) sessions.delete(s.client);
  s.log?.warn({ why }, 'resetting the guest SFTP session');
  try {
    s.sftp.end();
  } catch {
    // already closed
  }
}

/** The SFTP session of a connection (one per connection, opened on first use, bounded in time). */
function session(client: Client, log: Logger | undefined, timeoutMs: number): Promise<Session> {
  let s = sessions.get(client);
  if (!s) {
    const opening = new Promise<Session>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(
          new GuestUnavailableError(`the guest did not open an SFTP session within ${2 * timeoutMs} ms`),
        );
      }, 2 * timeoutMs);
      const opened = (err: Error | undefined, sftp: SFTPWrapper) => {
        clearTimeout(timer);
        if (done) {
          if (!err) sftp.end();
          return;
        }
        done = true;
        if (err) {
          // A connection used only for files that cannot open a session any more (e.g. sshd's
          // session limit, filled by SFTP servers stuck on FIFOs) is closed: the next call
          // reconnects.
          if (connectionUser(client) === SANDBOX_USER.name) client.end();
          return reject(new GuestUnavailableError(`cannot open SFTP: ${err.message}`));
        }
        const sess: Session = { sftp, client, log, entry: opening };
        const forget = () => {
          if (sessions.get(client) === opening) sessions.delete(client);
        };
        // Every error of the session is handled: logged, and the session is dropped (its pending
        // requests fail and are reported as GuestUnavailableError).
        sftp.on('error', (e: Error) => {
          log?.warn({ err: e.message }, 'guest SFTP session error');
          forget();
        });
        sftp.on('close', forget);
        sftp.on('end', forget);
        resolve(sess);
      };
      try {
        client.sftp(opened);
      } catch (err) {
        clearTimeout(timer);
        done = true;
        reject(new GuestUnavailableError(`cannot open SFTP: ${(err as Error).message}`));
      }
    });
    s = opening;
    sessions.set(client, s);
    s.catch(() => {
      if (sessions.get(client) === opening) sessions.delete(client);
    });
  }
  return s;
}

/** The SFTP session of a connection (one per connection, opened on first use). */
export async function sftpOf(client: Client): Promise<SFTPWrapper> {
  return (await session(client, undefined, SFTP_REQUEST_TIMEOUT_MS)).sftp;
}

/** The session for one file call. */
async function fileSession(client: Client, opts: { log?: Logger; requestTimeoutMs?: number }): Promise<Ctx> {
  const timeoutMs = opts.requestTimeoutMs ?? SFTP_REQUEST_TIMEOUT_MS;
  return { ...(await session(client, opts.log, timeoutMs)), timeoutMs };
}

/**
 * One SFTP request, bounded by the call's request timeout. SFTP status errors (a number `code`)
 * become file errors; anything else means the session or connection failed: the session is reset
 * and the call fails with GuestUnavailableError.
 */
function request<T>(
  s: Ctx,
  action: string,
  path: string,
  fn: (sftp: SFTPWrapper, cb: (err: Error | null | undefined, v: T) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      resetSession(s, `${action} ${path} timed out`);
      reject(
        new GuestFileError(
          'timed_out',
          path,
          `could not ${action} ${path}: the guest did not answer within ${s.timeoutMs / 1000} s ` +
            '(a FIFO or device that blocks?); the file session was reset',
        ),
      );
    }, s.timeoutMs);
    const cb = (err: Error | null | undefined, v: T) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (!err) return resolve(v);
      if (typeof (err as { code?: unknown }).code === 'number') return reject(err);
      resetSession(s, err.message);
      reject(new GuestUnavailableError(`SFTP failed while trying to ${action} ${path}: ${err.message}`));
    };
    try {
      fn(s.sftp, cb);
    } catch (err) {
      cb(err as Error, undefined as T);
    }
  });
}

function fileError(err: unknown, path: string, action: string): Error {
  if (!(err instanceof Error) || err instanceof GuestFileError || err instanceof GuestUnavailableError) {
    return err as Error;
  }
  const code = (err as { code?: number }).code;
  if (code === STATUS.NO_SUCH_FILE) {
    return new GuestFileError(
      'not_found',
      path,
      `${path} does not exist; list the parent directory to see what is there`,
    );
  }
  if (code === STATUS.PERMISSION_DENIED)
    return new GuestFileError('permission_denied', path, `permission denied: ${path}`);
  return new GuestFileError('failed', path, `could not ${action} ${path}: ${err.message}`);
}

/** `request` with its SFTP errors translated to file errors about `path`. */
const call = <T>(
  s: Ctx,
  action: string,
  path: string,
  fn: (sftp: SFTPWrapper, cb: (err: Error | null | undefined, v: T) => void) => void,
): Promise<T> =>
  request(s, action, path, fn).catch((err) => {
    throw fileError(err, path, action);
  });

// Uses ssh2's mode predicates rather than a table keyed by S_IF* constants: Biome 2.6's formatter
// rewrites octal numeric object keys (0o040000 became 9604), silently breaking such a table.
const typeOf = (s: Stats): FileType =>
  s.isDirectory() ? 'directory' : s.isFile() ? 'file' : s.isSymbolicLink() ? 'symlink' : 'other';
const kindOf = (s: Stats): string =>
  s.isCharacterDevice()
    ? 'a character device'
    : s.isBlockDevice()
      ? 'a block device'
      : s.isFIFO()
        ? 'a FIFO (named pipe)'
        : s.isSocket()
          ? 'a socket'
          : s.isDirectory()
            ? 'a directory'
            : 'not a regular file';
const notRegular = (path: string, s: Stats) =>
  new GuestFileError('not_regular_file', path, `${path} is ${kindOf(s)}, not a regular file`);
const entry = (name: string, path: string, s: Stats): FileEntry => ({
  name,
  path,
  type: typeOf(s),
  size: s.size,
  mode: `0${(s.mode & 0o7777).toString(8).padStart(3, '0')}`,
  modified: new Date(s.mtime * 1000).toISOString(),
});

async function statOrUndefined(
  s: Ctx,
  path: string,
  how: 'stat' | 'lstat' = 'stat',
): Promise<Stats | undefined> {
  try {
    return await request<Stats>(s, 'inspect', path, (sftp, cb) => sftp[how](path, cb));
  } catch (err) {
    if ((err as { code?: number }).code === STATUS.NO_SUCH_FILE) return undefined;
    throw fileError(err, path, 'inspect');
  }
}

/**
 * The real path (symbolic links resolved by the guest) of `path`, which must stay inside the
 * allowed roots: a link such as ~/s -> /etc/shadow is refused, whoever may read its target.
 */
async function confined(s: Ctx, requested: string, path: string): Promise<string> {
  const real = await call<string>(s, 'resolve', path, (sftp, cb) => sftp.realpath(path, cb));
  if (!isWithinAllowedRoots(posix.normalize(real))) {
    throw new GuestFileError(
      'outside_sandbox',
      requested,
      `${requested} leads (through a symbolic link) to ${real}, outside the sandbox; ` +
        `file tools only reach ${ALLOWED_ROOTS.join(' and ')}`,
    );
  }
  return real;
}

/**
 * The real path of directory `dir`, creating it and missing parents below an allowed root first.
 * Each existing directory is resolved and checked before anything is created inside it.
 */
async function ensureDir(s: Ctx, dir: string, requested: string): Promise<string> {
  const st = await statOrUndefined(s, dir);
  if (st) {
    if (!st.isDirectory())
      throw new GuestFileError('not_directory', dir, `${dir} exists and is not a directory`);
    return confined(s, requested, dir);
  }
  if (!isWithinAllowedRoots(dir) || (ALLOWED_ROOTS as readonly string[]).includes(dir)) {
    throw new GuestFileError('not_found', dir, `${dir} does not exist in the guest`);
  }
  const parent = await ensureDir(s, posix.dirname(dir), requested);
  const created = posix.join(parent, posix.basename(dir));
  await call<void>(s, 'create directory', created, (sftp, cb) =>
    sftp.mkdir(created, { mode: 0o755 }, (err) => cb(err, undefined)),
  );
  await ownBySandbox(s, created);
  return created;
}

/** Over a root connection, gives what was created to the sandbox user (a sandbox one owns it already). */
async function ownBySandbox(s: Ctx, path: string): Promise<void> {
  if (connectionUser(s.client) !== 'root') return;
  await call<void>(s, 'chown', path, (sftp, cb) =>
    sftp.chown(path, SANDBOX_USER.uid, SANDBOX_USER.gid, (err) => cb(err, undefined)),
  );
}

async function closeHandle(s: Ctx, path: string, handle: Buffer): Promise<void> {
  await request<void>(s, 'close', path, (sftp, cb) => sftp.close(handle, (err) => cb(err, undefined))).catch(
    () => undefined,
  );
}

/**
 * Writes a regular file (binary-safe), creating parent directories. Over the agent's sandbox
 * connection everything is created by, and belongs to, the sandbox user; the path must not lead
 * outside the allowed roots, nor to a device or FIFO.
 */
export async function writeGuestFile(
  client: Client,
  rawPath: string,
  data: Buffer,
  opts: { maxBytes: number; mode?: number; log?: Logger; requestTimeoutMs?: number },
): Promise<{ path: string; bytesWritten: number }> {
  const path = resolveGuestPath(rawPath);
  if (data.length > opts.maxBytes) {
    throw new GuestFileError(
      'too_large',
      path,
      `content is ${data.length} bytes; the limit is ${opts.maxBytes} bytes`,
    );
  }
  if ((ALLOWED_ROOTS as readonly string[]).includes(path)) {
    throw new GuestFileError('is_directory', path, `${path} is a directory; give a file path inside it`);
  }
  const s = await fileSession(client, opts);
  const dir = await ensureDir(s, posix.dirname(path), path);
  let target = posix.join(dir, posix.basename(path));
  let st = await statOrUndefined(s, target, 'lstat');
  if (st?.isSymbolicLink()) {
    target = await confined(s, path, target);
    st = await statOrUndefined(s, target);
  }
  if (st?.isDirectory()) {
    throw new GuestFileError('is_directory', path, `${path} is a directory; give a file path inside it`);
  }
  if (st && !st.isFile()) throw notRegular(path, st);
  const handle = await call<Buffer>(s, 'write', path, (sftp, cb) =>
    sftp.open(target, 'w', opts.mode ?? 0o644, cb),
  );
  try {
    for (let off = 0; off < data.length; off += TRANSFER_CHUNK) {
      const len = Math.min(TRANSFER_CHUNK, data.length - off);
      await call<void>(s, 'write', path, (sftp, cb) =>
        sftp.write(handle, data, off, len, off, (err) => cb(err, undefined)),
      );
    }
  } finally {
    await closeHandle(s, path, handle);
  }
  await ownBySandbox(s, target);
  return { path, bytesWritten: data.length };
}

/**
 * Reads a regular file of at most `maxBytes`: the type and size are checked before reading and
 * again on the open handle, and at most maxBytes + 1 bytes are ever read (a file that grows while
 * being read is refused, not read without end).
 */
export async function readGuestFile(
  client: Client,
  rawPath: string,
  opts: { maxBytes: number; log?: Logger; requestTimeoutMs?: number },
): Promise<{ path: string; data: Buffer; size: number }> {
  const path = resolveGuestPath(rawPath);
  const s = await fileSession(client, opts);
  const real = await confined(s, path, path);
  const st = await call<Stats>(s, 'read', path, (sftp, cb) => sftp.stat(real, cb));
  if (st.isDirectory()) {
    throw new GuestFileError(
      'is_directory',
      path,
      `${path} is a directory; use list_files to see its contents`,
    );
  }
  if (!st.isFile()) throw notRegular(path, st);
  const tooLarge = (size: number) =>
    new GuestFileError(
      'too_large',
      path,
      `${path} is ${size} bytes; the read limit is ${opts.maxBytes} bytes`,
    );
  if (st.size > opts.maxBytes) throw tooLarge(st.size);
  const handle = await call<Buffer>(s, 'read', path, (sftp, cb) => sftp.open(real, 'r', cb));
  try {
    // The file may have been replaced between the stat and the open: check what was opened.
    const fst = await call<Stats>(s, 'read', path, (sftp, cb) => sftp.fstat(handle, cb));
    if (!fst.isFile()) throw notRegular(path, fst);
    if (fst.size > opts.maxBytes) throw tooLarge(fst.size);
    const limit = opts.maxBytes + 1;
    const chunks: Buffer[] = [];
    let total = 0;
    while (total < limit) {
      const want = Math.min(TRANSFER_CHUNK, limit - total);
      const buf = Buffer.allocUnsafe(want);
      const n = await call<number>(s, 'read', path, (sftp, cb) =>
        sftp.read(handle, buf, 0, want, total, (err, bytesRead) => cb(err, bytesRead)),
      );
      if (!n) break;
      chunks.push(buf.subarray(0, n));
      total += n;
    }
    if (total > opts.maxBytes) {
      throw new GuestFileError(
        'too_large',
        path,
        `${path} grew past the read limit of ${opts.maxBytes} bytes while it was being read`,
      );
    }
    const data = Buffer.concat(chunks, total);
    return { path, data, size: data.length };
  } finally {
    await closeHandle(s, path, handle);
  }
}

/**
 * Lists a directory (names may contain any byte but `/` and NUL), sorted by name. At most
 * `maxEntries` + 1 entries are read from the guest: a larger directory is reported as truncated
 * (the entries shown are then the first ones the guest returned, not the first by name).
 */
export async function listGuestFiles(
  client: Client,
  rawPath: string,
  opts: { maxEntries: number; log?: Logger; requestTimeoutMs?: number },
): Promise<{ path: string; entries: FileEntry[]; truncated: boolean }> {
  const path = resolveGuestPath(rawPath);
  const s = await fileSession(client, opts);
  const real = await confined(s, path, path);
  const st = await call<Stats>(s, 'list', path, (sftp, cb) => sftp.stat(real, cb));
  if (!st.isDirectory()) {
    throw new GuestFileError('not_directory', path, `${path} is not a directory; use read_file to read it`);
  }
  const handle = await call<Buffer>(s, 'list', path, (sftp, cb) => sftp.opendir(real, cb));
  const list: Array<{ filename: string; attrs: Stats }> = [];
  try {
    while (list.length <= opts.maxEntries) {
      const batch = await request<Array<{ filename: string; attrs: Stats }> | undefined>(
        s,
        'list',
        path,
        (sftp, cb) =>
          sftp.readdir(handle, (err, l) =>
            (err as { code?: number } | undefined)?.code === STATUS.EOF
              ? cb(undefined, undefined)
              : cb(err, l),
          ),
      ).catch((err) => {
        throw fileError(err, path, 'list');
      });
      if (!batch) break;
      for (const e of batch) if (e.filename !== '.' && e.filename !== '..') list.push(e);
    }
  } finally {
    await closeHandle(s, path, handle);
  }
  const entries = list
    .slice(0, opts.maxEntries + 1)
    .map((e) => entry(e.filename, posix.join(path, e.filename), e.attrs))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { path, entries: entries.slice(0, opts.maxEntries), truncated: entries.length > opts.maxEntries };
}
