import { readFile } from 'node:fs/promises';
import { GuestConnections } from '../src/guest/ssh-connections.ts';
import { createLogger } from '../src/logger.ts';
import { nodeResolvers } from '../src/vm/network/dns-forwarder.ts';
import { VMNetworks } from '../src/vm/network/vm-network.ts';
import { type GuestImages, VMManager, vmPaths } from '../src/vm/vm-manager.ts';

export const testLog = createLogger({ level: 'warn' });

/**
 * The VM networks of one test file. Each file that boots VMs uses its own CIDR (test files run
 * in parallel and the names of namespaces and host tables derive from it).
 */
export async function testNetworks(cidr: string, extra: { allowCidrs?: string[] } = {}): Promise<VMNetworks> {
  const networks = new VMNetworks({
    cidr,
    allowCidrs: extra.allowCidrs ?? [],
    denyCidrs: [],
    upstreams: await nodeResolvers(),
    log: testLog,
  });
  await networks.init();
  return networks;
}

export function testManager(opts: {
  stateDir: string;
  images: GuestImages;
  networks: VMNetworks;
  tscKHz: number;
}): VMManager {
  return new VMManager({
    ...opts,
    accelerator: 'tcg',
    log: testLog,
    bootTimeoutMs: 180_000,
    caBundlePath: '/etc/ssl/certs/ca-certificates.crt',
  });
}

/** SSH connections as the agent makes them (root, to the VM namespace's address). */
export function testConnections(vms: VMManager, username = 'root'): GuestConnections {
  return new GuestConnections({
    log: testLog,
    resolve: async (vmId) => {
      const vm = vms.get(vmId);
      return {
        host: vm.network.nsIP,
        port: 22,
        username,
        privateKey: await readFile(vmPaths(vms.vmDir(vmId)).clientKey, 'utf8'),
        hostPublicKey: vm.hostPublicKey,
      };
    },
  });
}

/** The smallest python VM the tests boot (1 vCPU, 512 MiB, 1 GiB disk, egress all). */
export const pythonSpec = (vmId: string) => ({
  vmId,
  runtime: 'python' as const,
  cpus: 1,
  memoryMiB: 512,
  diskMiB: 1024,
  egress: 'all' as const,
});
