import { readFile } from 'node:fs/promises';
import { Agent, type AgentLimits, type ImageResolver } from '../src/agent.ts';
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
  snapshots?: boolean;
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

/**
 * An in-process Agent over a test's VM manager, with the production limits except the ones a
 * test narrows (e.g. a smaller output ring); two python VMs of capacity.
 */
export function testAgent(
  vms: VMManager,
  nodeName: string,
  limits: Partial<AgentLimits> = {},
  extra: { images?: ImageResolver } = {},
): Agent {
  const capacity = { vms: 2, cpus: 2, memoryMiB: 1024 };
  return new Agent({
    vms,
    log: testLog,
    ...extra,
    limits: {
      defaultExecTimeoutMs: 30_000,
      maxExecTimeoutMs: 300_000,
      maxOutputBytes: 1 << 20,
      maxWriteBytes: 1 << 20,
      maxReadBytes: 1 << 20,
      maxListEntries: 1_000,
      installTimeoutMs: 240_000,
      capacity,
      ...limits,
    },
    info: { nodeName, accelerator: 'tcg', agentVersion: 'test', capacity, runtimes: ['python'] },
  });
}
