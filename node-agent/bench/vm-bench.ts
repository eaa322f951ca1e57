// Benchmark: node-agent API vs the raw QEMU + SSH baseline, measured in the same run on the same
// images; and creates restored from a template snapshot, and suspend/resume, against cold creates
// of the same run (a second agent with WAGGLE_SNAPSHOTS=true). Not a test: prints JSON (and a
// markdown table with --markdown). Usage:
//   pnpm bench [--boots N] [--execs N] [--markdown]

import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startAgentProcess } from '@waggle/test';
import { createNodeAgentClient, Egress, Runtime, VMOrigin } from '../src/client.ts';
import { execScript } from '../src/guest/exec.ts';
import { shellQuote } from '../src/guest/shell-quote.ts';
import { runCommand } from '../src/guest/ssh-connections.ts';
import { resolveGuestImages } from '../src/guest-images.ts';
import { detectAccelerator } from '../src/vm/accelerator.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import { freeLoopbackPort, now, rawBoot, type Stats, stats } from './raw-baseline.ts';

const { values } = parseArgs({
  options: {
    boots: { type: 'string', default: '5' },
    execs: { type: 'string', default: '30' },
    markdown: { type: 'boolean', default: false },
  },
});
const BOOTS = Number(values.boots);
const EXECS = Number(values.execs);
const log = (m: string) => process.stderr.write(`bench: ${m}\n`);

const images = await resolveGuestImages({ runtimes: ['python'], overrides: {}, log: () => undefined });
const accel = await detectAccelerator({ requested: 'auto', kernel: images.kernel, initrd: images.initrd });
const tscKHz = accel.accelerator === 'tcg' ? await readHostTscKHz() : undefined;

const results: Record<string, Stats> = {};
const samples: Record<string, number[]> = {};
const record = (k: string, ms: number) => {
  samples[k] ??= [];
  samples[k].push(ms);
};

// The agent runs for the whole benchmark; raw and agent iterations alternate so that drift in
// host load affects both sides alike.
const stateDir = await mkdtemp(join(tmpdir(), 'waggle-bench-agent-'));
const apiPort = await freeLoopbackPort(43300);
const opsPort = await freeLoopbackPort(apiPort + 1);
const agent = await startAgentProcess({
  apiPort,
  opsPort,
  env: {
    WAGGLE_STATE_DIR: stateDir,
    WAGGLE_REGISTER: 'false',
    WAGGLE_GUEST_RUNTIMES: 'python',
    WAGGLE_VM_NETWORK_CIDR: '10.253.34.0/24',
    WAGGLE_SNAPSHOTS: 'false',
  },
});
const api = createNodeAgentClient(agent.apiUrl);
// The snapshotting agent: its creates of the benchmark's template restore a snapshot.
const snapStateDir = await mkdtemp(join(tmpdir(), 'waggle-bench-snap-'));
const snapApiPort = await freeLoopbackPort(opsPort + 1);
const snapAgent = await startAgentProcess({
  apiPort: snapApiPort,
  opsPort: await freeLoopbackPort(snapApiPort + 1),
  env: {
    WAGGLE_STATE_DIR: snapStateDir,
    WAGGLE_REGISTER: 'false',
    WAGGLE_GUEST_RUNTIMES: 'python',
    WAGGLE_VM_NETWORK_CIDR: '10.253.36.0/24',
    WAGGLE_SNAPSHOTS: 'true',
  },
});
const snapApi = createNodeAgentClient(snapAgent.apiUrl);
const benchSpec = (vmId: string) => ({
  vmId,
  runtime: Runtime.PYTHON,
  cpus: 1,
  memoryMib: 512,
  diskMib: 1024,
  egress: Egress.ALL,
});
const execOnce = async (vmId: string, code: string, language: string, client = api) => {
  for await (const m of client.exec({ vmId, code, language, timeoutMs: 30_000 })) {
    if (m.event.case === 'result') return m.event.value;
  }
  throw new Error('no result');
};
const timed = async (k: string, fn: () => Promise<unknown>) => {
  const t = now();
  await fn();
  record(k, now() - t);
};

// The first create of the template on the snapshotting agent boots and makes the snapshot.
log('making the template snapshot');
await snapApi.createVM({ spec: benchSpec('bench-seed') });
for (let waited = 0; ; waited += 200) {
  const done = await readdir(join(snapStateDir, 'snapshots')).catch(() => [] as string[]);
  if (done.some((d) => !d.startsWith('.'))) break;
  if (waited > 300_000) throw new Error('no snapshot within 300 s');
  await new Promise((r) => setTimeout(r, 200));
}
await snapApi.destroyVM({ vmId: 'bench-seed' });

log(
  `${BOOTS} boots each, alternating raw QEMU+SSH, node-agent CreateVM (cold) and CreateVM restored from the snapshot (${accel.accelerator})`,
);
let rawVm: Awaited<ReturnType<typeof rawBoot>> | undefined;
const lastVm = `bench-${BOOTS - 1}`;
for (let i = 0; i < BOOTS; i++) {
  const vm = await rawBoot({
    port: await freeLoopbackPort(43100),
    images,
    accelerator: accel.accelerator,
    tscKHz,
  });
  record('raw_boot_to_ssh_ms', vm.ms);
  if (i < BOOTS - 1) await vm.stop();
  else rawVm = vm;
  const vmId = `bench-${i}`;
  const t0 = now();
  await api.createVM({ spec: benchSpec(vmId) });
  record('agent_create_rpc_ms', now() - t0);
  await execOnce(vmId, 'true', 'shell');
  record('agent_create_to_first_exec_ms', now() - t0);
  if (i < BOOTS - 1) await api.destroyVM({ vmId });

  const restoredId = `bench-restore-${i}`;
  const t1 = now();
  const restored = await snapApi.createVM({ spec: benchSpec(restoredId) });
  record('agent_restore_create_rpc_ms', now() - t1);
  if (restored.vm?.origin !== VMOrigin.VM_ORIGIN_RESTORED) throw new Error('the create did not restore');
  await execOnce(restoredId, 'true', 'shell', snapApi);
  record('agent_restore_create_to_first_exec_ms', now() - t1);
  // Suspend and resume the restored VM (what an idle environment costs to bring back).
  const s0 = now();
  await snapApi.suspendVM({ vmId: restoredId });
  record('agent_suspend_rpc_ms', now() - s0);
  const r0 = now();
  await snapApi.resumeVM({ vmId: restoredId });
  record('agent_resume_rpc_ms', now() - r0);
  await execOnce(restoredId, 'true', 'shell', snapApi);
  record('agent_resume_to_first_exec_ms', now() - r0);
  await snapApi.destroyVM({ vmId: restoredId });
}
const raw = rawVm as NonNullable<typeof rawVm>;
const scriptFor = (code: string, ext: string, interpreter: string) =>
  `sh -c ${shellQuote(execScript({ id: `b-${randomBytes(4).toString('hex')}`, ext, bytes: Buffer.byteLength(code), interpreter }))}`;

log(`${EXECS} exec rounds, alternating`);
for (let i = 0; i <= EXECS; i++) {
  const warm = i === 0; // the first round warms connections and caches; not recorded
  const keep = (k: string) => (warm ? '_warmup' : k);
  await timed(keep('raw_exec_true_ms'), () => runCommand(raw.client, 'true'));
  await timed(keep('raw_exec_true_same_script_ms'), () =>
    runCommand(raw.client, scriptFor('true', 'sh', 'bash'), Buffer.from('true')),
  );
  await timed(keep('agent_exec_true_ms'), () => execOnce(lastVm, 'true', 'shell'));
  await timed(keep('agent_getvm_rpc_ms'), () => api.getVM({ vmId: lastVm }));
  if (i % 3 === 0) {
    await timed(keep('raw_exec_python_same_script_ms'), () =>
      runCommand(raw.client, scriptFor('print(1)', 'py', 'python3'), Buffer.from('print(1)')),
    );
    await timed(keep('agent_exec_python_ms'), () => execOnce(lastVm, 'print(1)', 'python'));
  }
}
delete samples._warmup;
for (const [k, v] of Object.entries(samples)) results[k] = stats(v);
await raw.stop();
await api.destroyVM({ vmId: lastVm });
await agent.kill('SIGTERM');
await snapAgent.kill('SIGTERM');
await rm(stateDir, { recursive: true, force: true });
await rm(snapStateDir, { recursive: true, force: true });

const r = results as Record<string, Stats>;
const out = {
  benchmark: 'node-agent',
  date: new Date().toISOString(),
  machine: {
    cpus: cpus().length,
    model: cpus()[0]?.model ?? 'unknown',
    accelerator: accel.accelerator,
    accelReason: accel.reason,
  },
  runs: { boots: BOOTS, execs: EXECS },
  results,
  targets: {
    restore_faster_than_cold_create: {
      restore_p50: r.agent_restore_create_to_first_exec_ms?.p50,
      cold_p50: r.agent_create_to_first_exec_ms?.p50,
      speedup:
        Math.round(
          ((r.agent_create_to_first_exec_ms?.p50 ?? 0) /
            (r.agent_restore_create_to_first_exec_ms?.p50 ?? 1)) *
            100,
        ) / 100,
      pass:
        (r.agent_restore_create_to_first_exec_ms?.p50 ?? Infinity) <
        (r.agent_create_to_first_exec_ms?.p50 ?? 0),
    },
    create_within_10pct_of_raw_boot: {
      agent_p50: r.agent_create_to_first_exec_ms?.p50,
      raw_p50: r.raw_boot_to_ssh_ms?.p50,
      ratio:
        Math.round(((r.agent_create_to_first_exec_ms?.p50 ?? 0) / (r.raw_boot_to_ssh_ms?.p50 ?? 1)) * 1000) /
        1000,
      pass: (r.agent_create_to_first_exec_ms?.p50 ?? Infinity) <= (r.raw_boot_to_ssh_ms?.p50 ?? 0) * 1.1,
    },
    exec_at_most_5ms_over_raw_same_command: {
      agent_p50: r.agent_exec_true_ms?.p50,
      raw_same_script_p50: r.raw_exec_true_same_script_ms?.p50,
      overhead_ms:
        Math.round(((r.agent_exec_true_ms?.p50 ?? 0) - (r.raw_exec_true_same_script_ms?.p50 ?? 0)) * 10) / 10,
      pass: (r.agent_exec_true_ms?.p50 ?? Infinity) - (r.raw_exec_true_same_script_ms?.p50 ?? 0) <= 5,
    },
  },
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
if (values.markdown) {
  process.stdout.write('\n| measurement | p50 ms | p95 ms | n |\n|---|---:|---:|---:|\n');
  for (const [k, v] of Object.entries(results))
    process.stdout.write(`| ${k} | ${v.p50} | ${v.p95} | ${v.n} |\n`);
}
process.exit(0);
