// Benchmark: creating VMs from an OCI image (docs/adr/0015): the first create of an image on a
// node (resolve + pull + unpack + toolbox + ext4 + boot) and later creates (cached), against the
// built-in python image's create and the raw pull + unpack floor (skopeo copy + umoci unpack
// alone) and a PullImage the node answers from its cache (a template recheck), all measured in
// the same run against a registry on loopback. The image is Debian with
// pandas preinstalled (~100 MiB compressed). Not a test: prints JSON (and a markdown table with
// --markdown). Usage:
//   pnpm bench:images [--runs N] [--markdown]

import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { ensureDebianTestImage, push, startAgentProcess, startRegistry } from '@waggle/test';
import { createNodeAgentClient, Egress, Runtime } from '../src/client.ts';
import { freeLoopbackPort, now, type Stats, stats } from './raw-baseline.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    markdown: { type: 'boolean', default: false },
  },
});
const RUNS = Number(values.runs);
const log = (m: string) => process.stderr.write(`bench: ${m}\n`);
const run = promisify(execFile);

const registry = await startRegistry();
const image = `${registry.host}/bench/data-science:1`;
log('building the test image (cached after the first run)');
await push(await ensureDebianTestImage('python-pandas', ['python3-pandas']), image);

const stateDir = await mkdtemp(join(tmpdir(), 'waggle-bench-images-'));
const cacheDir = join(stateDir, 'images');
const apiPort = await freeLoopbackPort(43500);
const agent = await startAgentProcess({
  apiPort,
  opsPort: await freeLoopbackPort(apiPort + 1),
  env: {
    WAGGLE_STATE_DIR: stateDir,
    WAGGLE_REGISTER: 'false',
    WAGGLE_GUEST_RUNTIMES: 'python',
    WAGGLE_VM_NETWORK_CIDR: '10.253.38.0/24',
    WAGGLE_IMAGE_ALLOW: `${registry.host}/bench/`,
    WAGGLE_IMAGE_INSECURE_REGISTRIES: registry.host,
    WAGGLE_IMAGE_CACHE_DIR: cacheDir,
  },
});
const api = createNodeAgentClient(agent.apiUrl);
const spec = (vmId: string, withImage: boolean) => ({
  vmId,
  runtime: Runtime.PYTHON,
  cpus: 1,
  memoryMib: 512,
  diskMib: 1024,
  egress: Egress.NONE,
  ...(withImage ? { image } : {}),
});
const firstExec = async (vmId: string) => {
  for await (const m of api.exec({ vmId, code: 'print(1)', language: 'python', timeoutMs: 60_000 })) {
    if (m.event.case === 'result' && m.event.value.stdout === '1\n') return;
  }
  throw new Error(`no result from ${vmId}`);
};

const samples: Record<string, number[]> = {};
const record = (k: string, ms: number) => {
  samples[k] ??= [];
  samples[k].push(ms);
};
const createTimed = async (prefix: string, vmId: string, withImage: boolean) => {
  const t0 = now();
  await api.createVM({ spec: spec(vmId, withImage) });
  record(`${prefix}_create_rpc_ms`, now() - t0);
  await firstExec(vmId);
  record(`${prefix}_create_to_first_exec_ms`, now() - t0);
  await api.destroyVM({ vmId });
};

log(`${RUNS} runs: raw pull + unpack, first create of the image, cached create, built-in image create`);
for (let i = 0; i < RUNS; i++) {
  // The floor: what skopeo and umoci take for this image, without Waggle.
  const raw = await mkdtemp(join(tmpdir(), 'waggle-bench-raw-'));
  const t0 = now();
  await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${image}`, `oci:${raw}/l:1`]);
  await run('umoci', ['raw', 'unpack', '--image', `${raw}/l:1`, `${raw}/rootfs`]);
  record('raw_pull_unpack_ms', now() - t0);
  await rm(raw, { recursive: true, force: true });

  // Nothing cached: the create pulls, unpacks and builds the root filesystem, then boots.
  for (const entry of await readdir(cacheDir).catch(() => [] as string[]))
    await rm(join(cacheDir, entry), { recursive: true, force: true });
  await createTimed('image_first', `img-first-${i}`, true);
  // What a template's recheck costs a node that has the image: PullImage answered from the cache.
  const tp = now();
  for await (const m of api.pullImage({ image, runtime: Runtime.PYTHON })) {
    if (m.event.case === 'image' && !m.event.value.cached) throw new Error('PullImage did not use the cache');
  }
  record('pull_image_cached_rpc_ms', now() - tp);
  await createTimed('image_cached', `img-cached-${i}`, true);
  await createTimed('builtin', `builtin-${i}`, false);
}

const results: Record<string, Stats> = {};
for (const [k, v] of Object.entries(samples)) results[k] = stats(v);
const r = results;
const out = {
  benchmark: 'oci-images',
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown' },
  image: { reference: image, content: 'Debian trixie minbase + python3-pandas' },
  runs: RUNS,
  results,
  derived: {
    first_create_over_raw_pull_unpack_p50_ms: Math.round(
      (r.image_first_create_rpc_ms?.p50 ?? 0) - (r.raw_pull_unpack_ms?.p50 ?? 0),
    ),
    cached_create_over_builtin_p50_ms: Math.round(
      (r.image_cached_create_rpc_ms?.p50 ?? 0) - (r.builtin_create_rpc_ms?.p50 ?? 0),
    ),
  },
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
if (values.markdown) {
  process.stdout.write('\n| measurement | p50 ms | p95 ms | n |\n|---|---:|---:|---:|\n');
  for (const [k, v] of Object.entries(results))
    process.stdout.write(`| ${k} | ${v.p50} | ${v.p95} | ${v.n} |\n`);
}
await agent.kill('SIGTERM');
await registry.stop();
await rm(stateDir, { recursive: true, force: true });
process.exit(0);
