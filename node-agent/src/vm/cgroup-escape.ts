import { access, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Moves a QEMU process into `<root>/<hierarchy>/<name>` for every cgroup hierarchy mounted under
 * `root` (cgroup v1 controllers, the v1 `systemd` name hierarchy, the v2 unified tree), so that it
 * no longer belongs to the node-agent container's cgroups. A container restart kills every
 * process in the container's cgroup (runc `kill --all`); a VM moved out survives it and the
 * restarted agent adopts it (docs/adr/0008). Returns the hierarchies the process was moved in.
 */
export async function moveToCgroup(pid: number, root: string, name: string): Promise<string[]> {
  const moved: string[] = [];
  const isTree = async (dir: string) =>
    access(join(dir, 'cgroup.procs')).then(
      () => true,
      () => false,
    );
  const trees: string[] = [];
  if (await isTree(root))
    trees.push(root); // pure cgroup v2: root is the unified tree
  else {
    for (const entry of await readdir(root)) {
      const dir = join(root, entry);
      const st = await stat(dir).catch(() => undefined);
      if (st?.isDirectory() && (await isTree(dir))) trees.push(dir);
    }
  }
  for (const tree of trees) {
    const target = join(tree, name);
    await mkdir(target, { recursive: true });
    // A new cpuset cgroup has no CPUs or memory nodes until they are copied from its parent.
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const parent = await readFile(join(tree, f), 'utf8').catch(() => undefined);
      const own = await readFile(join(target, f), 'utf8').catch(() => undefined);
      if (parent !== undefined && own !== undefined && own.trim() === '')
        await writeFile(join(target, f), parent);
    }
    await writeFile(join(target, 'cgroup.procs'), `${pid}\n`);
    moved.push(tree);
  }
  if (moved.length === 0) throw new Error(`no cgroup hierarchy found under ${root}`);
  return moved;
}
