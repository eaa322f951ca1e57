import { posix } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import { SANDBOX_USER } from './exec.ts';

/** Where file tools may read and write in a guest. */
export const ALLOWED_ROOTS = [SANDBOX_USER.home, '/tmp'] as const;

/** Whether a normalized absolute path is an allowed root or below one. */
export const isWithinAllowedRoots = (abs: string): boolean =>
  ALLOWED_ROOTS.some((root) => abs === root || abs.startsWith(`${root}/`));

/**
 * Resolves a user-supplied guest path: relative paths are relative to the sandbox home; the
 * result must stay inside an allowed root after `..` is resolved.
 */
export function resolveGuestPath(input: string): string {
  if (typeof input !== 'string' || input.length === 0) {
    throw new InvalidArgumentError(
      'path is empty; give a file path such as "data.csv" or "/home/sandbox/data.csv"',
    );
  }
  if (input.includes('\0')) throw new InvalidArgumentError('path contains a NUL byte');
  if (input.length > 4096) throw new InvalidArgumentError('path is longer than 4096 characters');
  const abs = posix.normalize(posix.isAbsolute(input) ? input : posix.join(SANDBOX_USER.home, input));
  const clean = abs.length > 1 ? abs.replace(/\/+$/, '') : abs;
  if (!isWithinAllowedRoots(clean)) {
    throw new InvalidArgumentError(
      `path ${JSON.stringify(input)} resolves to ${clean}, outside the sandbox; ` +
        `use a path under ${ALLOWED_ROOTS.join(' or ')} (relative paths are relative to ${SANDBOX_USER.home})`,
    );
  }
  return clean;
}
