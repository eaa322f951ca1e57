import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

/**
 * QEMU processes on this machine by the VM id (environment UID) they run for. A QEMU names its
 * instance's state directory (`…/vms/<instanceId>/`) on its command line; the instance's record
 * there says which VM id owns it (docs/adr/0014). Warm VMs without an owner are left out.
 */
export async function qemuPidsByVmId(): Promise<Map<string, number[]>> {
  const { stdout } = await promisify(execFile)('pgrep', ['-af', '^qemu-system-x86_64 ']).catch(() => ({
    stdout: '',
  }));
  const out = new Map<string, number[]>();
  for (const line of stdout.split('\n').filter(Boolean)) {
    const dir = /(\/\S*\/vms\/[^/\s]+)\//.exec(line)?.[1];
    if (!dir) continue;
    const record = JSON.parse(await readFile(`${dir}/vm.json`, 'utf8').catch(() => '{}')) as {
      vmId?: string;
    };
    if (!record.vmId) continue;
    out.set(record.vmId, [...(out.get(record.vmId) ?? []), Number(line.split(' ')[0])]);
  }
  return out;
}
