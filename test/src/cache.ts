import { homedir } from 'node:os';
import { join } from 'node:path';

/** Root of Waggle's machine-wide cache (toolchains, Kubernetes binaries, images). */
export function cacheRoot(): string {
  return process.env.WAGGLE_CACHE_DIR || join(homedir(), '.cache', 'waggle');
}
