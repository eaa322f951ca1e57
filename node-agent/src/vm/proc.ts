import { readdir, readFile } from 'node:fs/promises';

/** The NUL-separated command line of a process, joined with spaces ('' if it is gone). */
export async function cmdlineOf(pid: number): Promise<string> {
  const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return raw.split('\0').join(' ').trim();
}

/** True if `pid` runs and its command line contains `marker` (guards against pid reuse). */
export async function isOurProcess(pid: number, marker: string): Promise<boolean> {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const cmd = await cmdlineOf(pid);
  if (!cmd.includes(marker)) return false;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return !/^\d+ \(.*\) Z /.test(stat); // a zombie is not running
}

/** Pids of processes whose command line contains `marker`. */
export async function pidsWithMarker(marker: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    if ((await cmdlineOf(pid)).includes(marker)) out.push(pid);
  }
  return out;
}

/** SIGTERM, then SIGKILL after `graceMs` if it still runs; only if it is still ours. */
export async function terminate(pid: number, marker: string, graceMs = 3_000): Promise<void> {
  if (!(await isOurProcess(pid, marker))) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!(await isOurProcess(pid, marker))) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  while (await isOurProcess(pid, marker)) await new Promise((r) => setTimeout(r, 25));
}
