import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';

const MAX_SYMLINKS = 40;

/**
 * Resolves `path` inside an unpacked image root the way the guest will see it: symlinks (absolute
 * ones relative to `root`) are followed, `..` stops at `root`, and nothing outside `root` is ever
 * read — an image is untrusted, and `bin/sh -> /etc/shadow` or `-> ../../../` must not make the
 * node look at its own files. Returns the path of the final entry under `root`, or undefined
 * when it does not exist, loops or is not reachable.
 */
export async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  let pending = path.split('/').filter((c) => c !== '' && c !== '.');
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const c = pending.shift() as string;
    if (c === '..') {
      resolved.pop();
      continue;
    }
    const here = join(root, ...resolved, c);
    const st = await lstat(here).catch(() => undefined);
    if (!st) return undefined;
    if (st.isSymbolicLink()) {
      if (++hops > MAX_SYMLINKS) return undefined;
      const target = await readlink(here);
      const parts = target.split('/').filter((p) => p !== '' && p !== '.');
      if (target.startsWith('/')) resolved.length = 0;
      pending = [...parts, ...pending];
      continue;
    }
    if (pending.length > 0 && !st.isDirectory()) return undefined;
    resolved.push(c);
  }
  return join(root, ...resolved);
}

/** An executable regular file at `path` inside `root` (after symlinks), else undefined. */
export async function executableInRoot(root: string, path: string): Promise<string | undefined> {
  const at = await resolveInRoot(root, path);
  if (!at) return undefined;
  const st = await lstat(at).catch(() => undefined);
  return st?.isFile() && (st.mode & 0o111) !== 0 ? at : undefined;
}

/** The first `name` on `dirs` that is executable inside `root`, as the guest path. */
export async function findInRoot(
  root: string,
  name: string,
  dirs: readonly string[],
): Promise<string | undefined> {
  for (const d of dirs) {
    const guestPath = `${d.replace(/\/+$/, '')}/${name}`;
    if (await executableInRoot(root, guestPath)) return guestPath;
  }
  return undefined;
}
