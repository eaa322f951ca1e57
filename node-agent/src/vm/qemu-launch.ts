import { spawn } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';

/**
 * Starts QEMU detached from the agent (its own session, output to `logPath`) and resolves with its
 * pid once QEMU has written `pidFile`, i.e. parsed its options and opened its devices. QEMU is
 * not `-daemonize`d: its seccomp filter (spawn=deny) forbids the fork that daemonizing needs.
 * Rejects with QEMU's own message if it exits first.
 */
export async function launchDetached(opts: {
  command: string[];
  pidFile: string;
  logPath: string;
  timeoutMs?: number;
  /** An open file the process gets as its fd 3 (`-incoming fd:3`). */
  fd3?: number;
}): Promise<number> {
  const [cmd, ...args] = opts.command;
  if (!cmd) throw new Error('no command');
  const log = await open(opts.logPath, 'a', 0o600);
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let spawnError: Error | undefined;
  try {
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ['ignore', log.fd, log.fd, ...(opts.fd3 !== undefined ? [opts.fd3] : [])],
    });
    child.once('exit', (code, signal) => {
      exited = { code, signal };
    });
    child.once('error', (err) => {
      spawnError = err;
    });
    child.unref();
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      if (spawnError) throw spawnError;
      const pid = Number((await readFile(opts.pidFile, 'utf8').catch(() => '')).trim());
      if (pid > 0 && !exited) return pid;
      if (exited) {
        const out = (await readFile(opts.logPath, 'utf8').catch(() => '')).trim();
        throw new Error(
          `${out || 'no output'} (exit ${exited.code ?? `on signal ${exited.signal}`}${exited.signal === 'SIGSYS' ? ': a system call its seccomp filter forbids' : ''})`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`QEMU wrote no pid file within ${opts.timeoutMs ?? 30_000} ms`);
  } finally {
    await log.close();
  }
}
