import { spawn } from 'node:child_process';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { tailLog } from '../processes.ts';

/** A long-running cluster component that outlives the CLI that started it (pid file + log). */
export interface DaemonSpec {
  name: string;
  command: string;
  args: string[];
  logPath: string;
  pidPath: string;
  env?: NodeJS.ProcessEnv;
}

const cmdlineOf = (pid: number) => readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');

/** The daemon's pid when its pid file names a live process running `command`, else undefined. */
export async function daemonPid(spec: Pick<DaemonSpec, 'pidPath' | 'command'>): Promise<number | undefined> {
  const pid = Number((await readFile(spec.pidPath, 'utf8').catch(() => '')).trim());
  if (!pid) return undefined;
  const cmdline = await cmdlineOf(pid);
  return cmdline.split('\0')[0] === spec.command ? pid : undefined;
}

/**
 * Starts the daemon in its own session (detached, not killed with the CLI) unless it already
 * runs with the same arguments; one running with other arguments (a cluster made by an older
 * version of this harness) is stopped and started again. Returns its pid and whether it was
 * started now.
 */
export async function ensureDaemon(spec: DaemonSpec): Promise<{ pid: number; started: boolean }> {
  const running = await daemonPid(spec);
  if (running) {
    const args = (await cmdlineOf(running)).split('\0').slice(1, -1);
    if (args.join('\0') === spec.args.join('\0')) return { pid: running, started: false };
    await stopDaemon(spec);
  }
  const log = await open(spec.logPath, 'a');
  const child = spawn(spec.command, spec.args, {
    env: spec.env ?? process.env,
    detached: true,
    stdio: ['ignore', log.fd, log.fd],
  });
  await log.close();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${spec.name} (${spec.command})`);
  child.unref();
  await writeFile(spec.pidPath, `${pid}\n`);
  return { pid, started: true };
}

/** Throws with the component's last log lines when its process has died. */
export async function assertAlive(spec: DaemonSpec): Promise<void> {
  if (await daemonPid(spec)) return;
  throw new Error(
    `${spec.name} is not running; last lines of ${spec.logPath}:\n${await tailLog(spec.logPath, 25)}`,
  );
}

/** SIGTERM to the daemon's process group, SIGKILL after `graceMs`; removes the pid file. */
export async function stopDaemon(
  spec: Pick<DaemonSpec, 'pidPath' | 'command'>,
  graceMs = 10_000,
): Promise<boolean> {
  const pid = await daemonPid(spec);
  if (pid) {
    const signal = (s: NodeJS.Signals) => {
      try {
        process.kill(-pid, s);
      } catch {
        try {
          process.kill(pid, s);
        } catch {
          // gone
        }
      }
    };
    signal('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && (await cmdlineOf(pid))) await new Promise((r) => setTimeout(r, 100));
    if (await cmdlineOf(pid)) signal('SIGKILL');
    while (await cmdlineOf(pid)) await new Promise((r) => setTimeout(r, 50));
  }
  await rm(spec.pidPath, { force: true });
  return pid !== undefined;
}
