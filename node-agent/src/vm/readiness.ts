import { open } from 'node:fs/promises';

export const READY_LINE = 'WAGGLE_READY';
export const FAILED_PREFIX = 'WAGGLE_FAILED';

export type Readiness = { ready: true } | { ready: false; reason: string };

/**
 * Waits for the guest's readiness line on its serial log (never by probing the forwarded SSH
 * port: QEMU's user networking accepts connections before the guest listens, and early probes
 * can wedge the forward). Reads only the bytes appended since the last poll.
 */
export async function waitForGuestReady(opts: {
  serialLogPath: string;
  timeoutMs: number;
  isAlive: () => boolean;
  pollMs?: number;
  signal?: AbortSignal;
}): Promise<Readiness> {
  const deadline = Date.now() + opts.timeoutMs;
  const poll = opts.pollMs ?? 20;
  let offset = 0;
  let pending = '';
  while (true) {
    const chunk = await readFrom(opts.serialLogPath, offset);
    offset += chunk.length;
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const raw of [...lines, pending]) {
      const line = raw.replace(/\r$/, '');
      if (line.includes(READY_LINE)) return { ready: true };
      const failed = line.indexOf(FAILED_PREFIX);
      if (failed >= 0 && lines.includes(raw)) {
        return {
          ready: false,
          reason: `guest init failed: ${line.slice(failed + FAILED_PREFIX.length).trim()}`,
        };
      }
    }
    if (opts.signal?.aborted) return { ready: false, reason: 'aborted' };
    if (!opts.isAlive()) return { ready: false, reason: 'QEMU exited during boot' };
    if (Date.now() > deadline)
      return { ready: false, reason: `no readiness signal within ${opts.timeoutMs} ms` };
    await new Promise((r) => setTimeout(r, poll));
  }
}

async function readFrom(path: string, offset: number): Promise<Buffer> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return Buffer.alloc(0);
  try {
    const { size } = await fh.stat();
    if (size <= offset) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - offset);
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The last `n` lines of the serial console, for error messages. */
export async function consoleTail(serialLogPath: string, n = 15): Promise<string> {
  const buf = await readFrom(serialLogPath, 0);
  return buf.toString('utf8').replace(/\r/g, '').trimEnd().split('\n').slice(-n).join('\n');
}
