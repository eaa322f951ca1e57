import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

/**
 * QEMU processes on this machine by the VM id (environment UID) they run for: each runs chrooted
 * in its instance's state directory, whose record says which VM id owns it (docs/adr/0014).
 * Warm VMs without an owner are left out.
 */
export async function qemuPidsByVmId(): Promise<Map<string, number[]>> {
  const { stdout } = await promisify(execFile)('pgrep', ['-af', '^qemu-system-x86_64 ']).catch(() => ({
    stdout: '',
  }));
  const out = new Map<string, number[]>();
  for (const line of stdout.split('\n').filter(Boolean)) {
    const pid = Number(line.split(' ')[0]);
    // QEMU is chrooted into `<instance dir>/root`; its record is one level up. Read through
    // /proc: the paths on its command line are the node-agent container's, not this host's.
    const record = JSON.parse(await readFile(`/proc/${pid}/root/../vm.json`, 'utf8').catch(() => '{}')) as {
      vmId?: string;
    };
    if (!record.vmId) continue;
    out.set(record.vmId, [...(out.get(record.vmId) ?? []), pid]);
  }
  return out;
}
