import { access, mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Limits of one VM's cgroup: vCPUs as a CPU quota, memory (guest + QEMU's own), processes. */
export interface CgroupLimits {
  cpus: number;
  memoryBytes: number;
  pids: number;
}

const CPU_PERIOD_US = 100_000;

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/** Every hierarchy under `root`: the root itself on pure cgroup v2, else each v1 controller dir. */
async function hierarchies(root: string): Promise<string[]> {
  if (await exists(join(root, 'cgroup.procs'))) return [root];
  const trees: string[] = [];
  for (const entry of await readdir(root)) {
    const dir = join(root, entry);
    const st = await stat(dir).catch(() => undefined);
    if (st?.isDirectory() && (await exists(join(dir, 'cgroup.procs')))) trees.push(dir);
  }
  return trees;
}

/** Writes each limit a hierarchy offers (v1 and v2 file names); files it lacks are skipped. */
async function writeLimits(dir: string, l: CgroupLimits): Promise<void> {
  const files: Array<[string, string]> = [
    ['cpu.cfs_period_us', String(CPU_PERIOD_US)],
    ['cpu.cfs_quota_us', String(l.cpus * CPU_PERIOD_US)],
    ['cpu.max', `${l.cpus * CPU_PERIOD_US} ${CPU_PERIOD_US}`],
    ['memory.limit_in_bytes', String(l.memoryBytes)],
    ['memory.max', String(l.memoryBytes)],
    ['memory.swap.max', '0'],
    ['pids.max', String(l.pids)],
  ];
  for (const [file, value] of files) {
    if (await exists(join(dir, file))) await writeFile(join(dir, file), value);
  }
}

/**
 * Moves a QEMU process into `<root>/<hierarchy>/<name>` for every cgroup hierarchy mounted under
 * `root` (cgroup v1 controllers, the v1 `systemd` name hierarchy, the v2 unified tree), so that it
 * no longer belongs to the node-agent container's cgroups. A container restart kills every
 * process in the container's cgroup (runc `kill --all`); a VM moved out survives it and the
 * restarted agent adopts it (docs/adr/0008). `name` may be nested (`waggle-vms/<vmId>`); with
 * `limits`, they are written before the process joins, so it never runs unlimited. Returns the
 * hierarchies the process was moved in.
 */
export async function moveToCgroup(
  pid: number,
  root: string,
  name: string,
  limits?: CgroupLimits,
): Promise<string[]> {
  const procs = await prepareCgroup(root, name, limits);
  for (const file of procs) await writeFile(file, `${pid}\n`);
  return procs.map((f) => f.slice(0, -'cgroup.procs'.length - name.length - 2));
}

/**
 * Creates `<root>/<hierarchy>/<name>` in every hierarchy with `limits` written, and returns the
 * `cgroup.procs` file of each: a process that writes its pid there (joinCgroupsPrefix) starts
 * inside the VM's cgroup, so nothing it allocates is charged to the agent's container (cgroup v2
 * does not move memory charges with a process: a restore that loads the guest's memory before
 * QEMU is moved would leave it charged to the agent, whose limit it then breaks).
 */
export async function prepareCgroup(root: string, name: string, limits?: CgroupLimits): Promise<string[]> {
  const procs: string[] = [];
  for (const tree of await hierarchies(root)) {
    let parent = tree;
    for (const part of name.split('/').filter(Boolean)) {
      const dir = join(parent, part);
      await mkdir(dir, { recursive: true });
      // A new cpuset cgroup has no CPUs or memory nodes until they are copied from its parent.
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        const from = await readFile(join(parent, f), 'utf8').catch(() => undefined);
        const own = await readFile(join(dir, f), 'utf8').catch(() => undefined);
        if (from !== undefined && own !== undefined && own.trim() === '') await writeFile(join(dir, f), from);
      }
      parent = dir;
    }
    if (limits) await writeLimits(parent, limits);
    procs.push(join(parent, 'cgroup.procs'));
  }
  if (procs.length === 0) throw new Error(`no cgroup hierarchy found under ${root}`);
  return procs;
}

/**
 * A command prefix that moves itself into the given cgroups (their `cgroup.procs` files), then
 * execs the rest of the command line: the process is in its cgroup before it runs a single
 * instruction of what follows.
 */
export function joinCgroupsPrefix(procsFiles: readonly string[]): string[] {
  return [
    '/bin/sh',
    '-c',
    'for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 1; shift; done; shift; exec "$@"',
    'waggle-join-cgroup',
    ...procsFiles,
    '--',
  ];
}

/** Removes `<root>/<hierarchy>/<name>` everywhere (once its processes are gone). Idempotent. */
export async function removeCgroup(root: string, name: string): Promise<void> {
  for (const tree of await hierarchies(root).catch(() => [] as string[])) {
    await rmdir(join(tree, name)).catch(() => undefined);
  }
}
