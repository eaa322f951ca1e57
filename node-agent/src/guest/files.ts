import { posix } from 'node:path';
import type { Client, SFTPWrapper, Stats } from 'ssh2';
import { GuestFileError, GuestUnavailableError } from '../errors.ts';
import { SANDBOX_USER } from './exec.ts';
import { ALLOWED_ROOTS, resolveGuestPath } from './paths.ts';

const STATUS = { NO_SUCH_FILE: 2, PERMISSION_DENIED: 3 } as const;
export type FileType = 'file' | 'directory' | 'symlink' | 'other';

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

const sftpSessions = new WeakMap<Client, Promise<SFTPWrapper>>();

/** The SFTP session of a connection (one per connection, opened on first use). */
export function sftpOf(client: Client): Promise<SFTPWrapper> {
  let s = sftpSessions.get(client);
  if (!s) {
    s = new Promise<SFTPWrapper>((resolve, reject) =>
      client.sftp((err, sftp) =>
        err ? reject(new GuestUnavailableError(`cannot open SFTP: ${err.message}`)) : resolve(sftp),
      ),
    );
    sftpSessions.set(client, s);
    s.catch(() => sftpSessions.delete(client));
  }
  return s;
}

const p = <T>(fn: (cb: (err: Error | null | undefined, v: T) => void) => void) =>
  new Promise<T>((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));

function fileError(err: unknown, path: string, action: string): Error {
  const code = (err as { code?: number }).code;
  if (code === STATUS.NO_SUCH_FILE) {
    return new GuestFileError(
      'not_found',
      `${path} does not exist; list the parent directory to see what is there`,
    );
  }
  if (code === STATUS.PERMISSION_DENIED)
    return new GuestFileError('permission_denied', `permission denied: ${path}`);
  return new GuestFileError('failed', `could not ${action} ${path}: ${(err as Error).message}`);
}

// Uses ssh2's mode predicates rather than a table keyed by S_IF* constants: Biome 2.6's formatter
// rewrites octal numeric object keys (0o040000 became 9604), silently breaking such a table.
const typeOf = (s: Stats): FileType =>
  s.isDirectory() ? 'directory' : s.isFile() ? 'file' : s.isSymbolicLink() ? 'symlink' : 'other';
const entry = (name: string, path: string, s: Stats): FileEntry => ({
  name,
  path,
  type: typeOf(s),
  size: s.size,
  mode: `0${(s.mode & 0o7777).toString(8).padStart(3, '0')}`,
  modified: new Date(s.mtime * 1000).toISOString(),
});

async function statOrUndefined(sftp: SFTPWrapper, path: string): Promise<Stats | undefined> {
  try {
    return await p<Stats>((cb) => sftp.stat(path, cb));
  } catch (err) {
    if ((err as { code?: number }).code === STATUS.NO_SUCH_FILE) return undefined;
    throw fileError(err, path, 'inspect');
  }
}

/** Creates missing parent directories (owned by the sandbox user) below an allowed root. */
async function ensureParents(sftp: SFTPWrapper, path: string): Promise<void> {
  const dir = posix.dirname(path);
  const root = ALLOWED_ROOTS.find((r) => dir === r || dir.startsWith(`${r}/`)) ?? '/';
  let current = root;
  for (const part of dir.slice(root.length).split('/').filter(Boolean)) {
    current = `${current}/${part}`;
    const st = await statOrUndefined(sftp, current);
    if (st && typeOf(st) === 'directory') continue;
    if (st) throw new GuestFileError('not_directory', `${current} exists and is not a directory`);
    await p<void>((cb) => sftp.mkdir(current, { mode: 0o755 }, (err) => cb(err, undefined))).catch((err) => {
      throw fileError(err, current, 'create directory');
    });
    await p<void>((cb) =>
      sftp.chown(current, SANDBOX_USER.uid, SANDBOX_USER.gid, (err) => cb(err, undefined)),
    );
  }
}

/** Writes a file (binary-safe), creating parent directories; the file belongs to the sandbox user. */
export async function writeGuestFile(
  client: Client,
  rawPath: string,
  data: Buffer,
  opts: { maxBytes: number; mode?: number },
): Promise<{ path: string; bytesWritten: number }> {
  const path = resolveGuestPath(rawPath);
  if (data.length > opts.maxBytes) {
    throw new GuestFileError(
      'too_large',
      `content is ${data.length} bytes; the limit is ${opts.maxBytes} bytes`,
    );
  }
  const sftp = await sftpOf(client);
  const existing = await statOrUndefined(sftp, path);
  if (existing && typeOf(existing) === 'directory') {
    throw new GuestFileError('is_directory', `${path} is a directory; give a file path inside it`);
  }
  await ensureParents(sftp, path);
  await p<void>((cb) =>
    sftp.writeFile(path, data, { mode: opts.mode ?? 0o644 }, (err) => cb(err, undefined)),
  ).catch((err) => {
    throw fileError(err, path, 'write');
  });
  await p<void>((cb) => sftp.chown(path, SANDBOX_USER.uid, SANDBOX_USER.gid, (err) => cb(err, undefined)));
  return { path, bytesWritten: data.length };
}

/** Reads a whole file after checking (before reading) that it is a file within the size limit. */
export async function readGuestFile(
  client: Client,
  rawPath: string,
  opts: { maxBytes: number },
): Promise<{ path: string; data: Buffer; size: number }> {
  const path = resolveGuestPath(rawPath);
  const sftp = await sftpOf(client);
  const st = await p<Stats>((cb) => sftp.stat(path, cb)).catch((err) => {
    throw fileError(err, path, 'read');
  });
  if (typeOf(st) === 'directory') {
    throw new GuestFileError('is_directory', `${path} is a directory; use list_files to see its contents`);
  }
  if (st.size > opts.maxBytes) {
    throw new GuestFileError(
      'too_large',
      `${path} is ${st.size} bytes; the read limit is ${opts.maxBytes} bytes`,
    );
  }
  const data = await p<Buffer>((cb) => sftp.readFile(path, cb)).catch((err) => {
    throw fileError(err, path, 'read');
  });
  return { path, data, size: data.length };
}

/** Lists a directory (names may contain any byte but `/` and NUL), sorted by name. */
export async function listGuestFiles(
  client: Client,
  rawPath: string,
  opts: { maxEntries: number },
): Promise<{ path: string; entries: FileEntry[]; truncated: boolean }> {
  const path = resolveGuestPath(rawPath);
  const sftp = await sftpOf(client);
  const st = await p<Stats>((cb) => sftp.stat(path, cb)).catch((err) => {
    throw fileError(err, path, 'list');
  });
  if (typeOf(st) !== 'directory') {
    throw new GuestFileError('not_directory', `${path} is not a directory; use read_file to read it`);
  }
  const list = await p<Array<{ filename: string; attrs: Stats }>>((cb) => sftp.readdir(path, cb)).catch(
    (err) => {
      throw fileError(err, path, 'list');
    },
  );
  const entries = list
    .filter((e) => e.filename !== '.' && e.filename !== '..')
    .map((e) => entry(e.filename, posix.join(path, e.filename), e.attrs))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { path, entries: entries.slice(0, opts.maxEntries), truncated: entries.length > opts.maxEntries };
}
