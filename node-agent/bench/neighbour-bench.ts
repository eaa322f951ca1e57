// Benchmark: a neighbour's `execute` latency with and without a hostile guest beside it (a guest
// that spins its vCPU, forks without end, or fills its disk). Both VMs get the agent's per-VM
// cgroup limits (1 vCPU each). Not a test: prints JSON with p50/p95 per scenario, the ratio to
// the quiet baseline measured in the same run, and (with --markdown) a table.
//   pnpm bench:neighbour [--execs N] [--markdown]

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execCode } from '../src/guest/exec.ts';
import { GuestConnections, runCommand } from '../src/guest/ssh-connections.ts';
import { resolveGuestImages } from '../src/guest-images.ts';
import { createLogger } from '../src/logger.ts';
import { detectAccelerator } from '../src/vm/accelerator.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import { nodeResolvers } from '../src/vm/network/dns-forwarder.ts';
import { VMNetworks } from '../src/vm/network/vm-network.ts';
import { VMManager, vmPaths } from '../src/vm/vm-manager.ts';
import { now, type Stats, stats } from './raw-baseline.ts';

const { values } = parseArgs({
  options: { execs: { type: 'string', default: '20' }, markdown: { type: 'boolean', default: false } },
});
const EXECS = Number(values.execs);
const say = (m: string) => process.stderr.write(`bench: ${m}\n`);
const log = createLogger({ level: 'warn' });

const images = await resolveGuestImages({
  runtimes: ['python', 'shell'],
  overrides: {},
  log: () => undefined,
});
const accel = await detectAccelerator({ requested: 'auto', kernel: images.kernel, initrd: images.initrd });
const tscKHz = accel.accelerator === 'tcg' ? await readHostTscKHz() : undefined;
const stateDir = await mkdtemp(join(tmpdir(), 'waggle-bench-neighbour-'));
const networks = new VMNetworks({
  cidr: '10.253.35.0/24',
  allowCidrs: [],
  denyCidrs: [],
  upstreams: await nodeResolvers(),
  log,
});
await networks.init();
const vms = new VMManager({
  stateDir,
  images,
  networks,
  accelerator: accel.accelerator,
  ...(tscKHz ? { tscKHz } : {}),
  log,
  bootTimeoutMs: 180_000,
  vmCgroup: { root: '/sys/fs/cgroup', name: `waggle-bench-${process.pid}` },
});
const conns = new GuestConnections({
  log,
  resolve: async (vmId) => {
    const vm = vms.get(vmId);
    return {
      host: vm.network.nsIP,
      port: 22,
      username: 'root',
      privateKey: await readFile(vmPaths(vms.vmDir(vmId)).clientKey, 'utf8'),
      hostPublicKey: vm.hostPublicKey,
    };
  },
});
const base = { cpus: 1, memoryMiB: 512, diskMiB: 1024, egress: 'none' as const };

const results: Record<string, Stats & { ratio_to_quiet_p50?: number }> = {};
try {
  say(`booting the neighbour and the hostile guest (${accel.accelerator})`);
  await Promise.all([
    vms.create({ ...base, vmId: 'neighbour', runtime: 'python' }),
    vms.create({ ...base, vmId: 'hostile', runtime: 'shell' }),
  ]);
  const neighbour = await conns.get('neighbour');
  const hostile = await conns.get('hostile');
  const measure = async (label: string) => {
    const samples: number[] = [];
    for (let i = 0; i < EXECS + 2; i++) {
      const t0 = now();
      const r = await execCode(neighbour, {
        code: 'print(sum(range(20000)))',
        language: 'python',
        timeoutMs: 60_000,
        maxOutputBytes: 1024,
      });
      if (r.stdout !== '199990000\n') throw new Error(`neighbour exec failed: ${JSON.stringify(r)}`);
      if (i >= 2) samples.push(now() - t0); // two warm-ups
    }
    results[label] = stats(samples);
    say(`${label}: p50 ${results[label].p50} ms`);
  };
  /** Starts a hostile workload in the other guest for the duration of one measurement. */
  const beside = async (label: string, script: string) => {
    // Cancelling the run kills its whole session the way a cancelled execute does.
    const stop = new AbortController();
    const run = execCode(hostile, {
      code: script,
      language: 'shell',
      timeoutMs: 600_000,
      maxOutputBytes: 4096,
      signal: stop.signal,
    });
    await new Promise((r) => setTimeout(r, 3_000)); // let it get going
    await measure(label);
    stop.abort();
    await run.catch(() => undefined);
    await runCommand(hostile, '/usr/bin/rm -f /home/sandbox/fill').catch(() => undefined);
  };

  await measure('quiet');
  await beside('cpu_spin', 'while :; do :; done');
  await beside('fork_bomb', ':(){ :|:& };:');
  await beside(
    'disk_fill',
    'while :; do dd if=/dev/zero of=/home/sandbox/fill bs=1M count=256 conv=fsync 2>/dev/null; done',
  );
  await measure('quiet_again');
  const quiet = results.quiet?.p50 ?? 1;
  for (const r of Object.values(results)) r.ratio_to_quiet_p50 = Math.round((r.p50 / quiet) * 100) / 100;
} finally {
  conns.closeAll();
  for (const vm of vms.list()) await vms.destroyInstance(vm.instanceId);
  vms.close();
  networks.close();
  await networks.removeHostTable();
  await rm(stateDir, { recursive: true, force: true });
}

const out = {
  benchmark: 'noisy-neighbour',
  accelerator: accel.accelerator,
  execs: EXECS,
  neighbour_exec_ms: results,
  target: 'p50 beside a hostile guest <= 1.5x quiet',
  pass: Object.values(results).every((r) => (r.ratio_to_quiet_p50 ?? 0) <= 1.5),
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
if (values.markdown) {
  process.stdout.write('\n| scenario | p50 ms | p95 ms | × quiet p50 |\n|---|---|---|---|\n');
  for (const [k, r] of Object.entries(results))
    process.stdout.write(`| ${k} | ${r.p50} | ${r.p95} | ${r.ratio_to_quiet_p50} |\n`);
}
