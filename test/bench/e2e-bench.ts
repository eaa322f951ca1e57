// End-to-end benchmark (not a test): through the Helm-installed stack on the local node, MCP
// create_environment → first execute result and the execute round trip, next to the node-agent
// direct path (ConnectRPC to the same agent) and the raw QEMU + SSH baseline, on the same images,
// interleaved in one run. Prints JSON; --markdown adds a table for docs/benchmarks.md.
//   pnpm bench:e2e [--boots N] [--execs N] [--markdown]
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import {
  execScript,
  freeLoopbackPort,
  type RawVM,
  rawBoot,
  runCommand,
  sampler,
  shellQuote,
} from '@waggle/node-agent/bench';
import { type AgentTls, createNodeAgentClient, Egress, Runtime } from '@waggle/node-agent/client';
import { detectAccelerator, readHostTscKHz, resolveGuestImages } from '@waggle/node-agent/host';
import { grantAgent } from '../src/agent-identity.ts';
import { CLUSTER } from '../src/cluster/layout.ts';
import { connectClient } from '../src/mcp-client.ts';
import { installWaggle, prepareLocalStack, RELEASE, RELEASE_NAMESPACE } from '../src/stack.ts';

const { values } = parseArgs({
  options: {
    boots: { type: 'string', default: '3' },
    execs: { type: 'string', default: '30' },
    markdown: { type: 'boolean', default: false },
  },
});
const BOOTS = Number(values.boots);
const EXECS = Number(values.execs);
const log = (m: string) => process.stderr.write(`bench:e2e: ${m}\n`);

log('preparing the local stack (cluster, images, chart)');
const stack = await prepareLocalStack({ log });
await installWaggle(stack);
const k = stack.cluster.k;
const ns = `bench-${randomBytes(2).toString('hex')}`;
const token = await grantAgent(k, { namespace: ns, duration: '2h' });
const ip = (
  await k(['get', 'svc', '-n', RELEASE_NAMESPACE, `${RELEASE}-mcp`, '-o', 'jsonpath={.spec.clusterIP}'])
).trim();
const mcp = await connectClient(`http://${ip}:8080/mcp`, token, 'bench-e2e');
type Out = { structuredContent?: Record<string, unknown>; isError?: boolean; content: unknown };
const tool = async (name: string, args: Record<string, unknown>) => {
  const r = (await mcp.callTool({ name, arguments: args }, undefined, { timeout: 300_000 })) as Out;
  if (r.isError) throw new Error(`${name}: ${JSON.stringify(r.content)}`);
  return r.structuredContent as Record<string, unknown>;
};

// The agent serves mutual TLS and authorizes per identity, as in production: lifecycle calls
// with the operator's client certificate, exec with the gateway's (both from the chart's Secrets).
const clientTls = async (secret: string): Promise<AgentTls & { nodeName: string }> => {
  const data = JSON.parse(
    await k(['get', 'secret', '-n', RELEASE_NAMESPACE, `${RELEASE}-${secret}`, '-o', 'jsonpath={.data}']),
  ) as Record<string, string>;
  const field = (f: string) => Buffer.from(data[f] ?? '', 'base64').toString('utf8');
  return {
    ca: field('ca.crt'),
    cert: field('tls.crt'),
    key: field('tls.key'),
    nodeName: CLUSTER.nodeName,
  };
};
const agentUrl = `https://${CLUSTER.nodeIP}:7443`;
const agent = createNodeAgentClient(agentUrl, await clientTls('operator-agent-identity'));
const agentData = createNodeAgentClient(agentUrl, await clientTls('gateway-agent-identity'));
const agentExec = async (vmId: string, code: string, language: string) => {
  for await (const m of agentData.exec({ vmId, code, language, timeoutMs: 30_000 }))
    if (m.event.case === 'result') return m.event.value;
  throw new Error('no result');
};
const images = await resolveGuestImages({ runtimes: ['python'], overrides: {}, log: () => undefined });
const accel = await detectAccelerator({ requested: 'auto', kernel: images.kernel, initrd: images.initrd });
const tscKHz = accel.accelerator === 'tcg' ? await readHostTscKHz() : undefined;
const s = sampler();

log(
  `${BOOTS} boots each, interleaved: raw QEMU+SSH, node-agent CreateVM, MCP create_environment (${accel.accelerator})`,
);
let raw: RawVM | undefined;
let agentVm = '';
let envId = '';
for (let i = 0; i < BOOTS; i++) {
  const last = i === BOOTS - 1;
  const vm = await rawBoot({
    port: await freeLoopbackPort(43600),
    images,
    accelerator: accel.accelerator,
    tscKHz,
  });
  s.record('raw_boot_to_ssh_ms', vm.ms);
  if (last) raw = vm;
  else await vm.stop();

  const vmId = `bench-e2e-${randomBytes(3).toString('hex')}`;
  const t0 = performance.now();
  await agent.createVM({
    spec: { vmId, runtime: Runtime.PYTHON, cpus: 1, memoryMib: 512, diskMib: 2048, egress: Egress.ALL },
  });
  s.record('agent_create_rpc_ms', performance.now() - t0);
  await agentExec(vmId, 'true', 'shell');
  s.record('agent_create_to_first_exec_ms', performance.now() - t0);
  if (last) agentVm = vmId;
  else await agent.destroyVM({ vmId });

  const t1 = performance.now();
  const env = await tool('create_environment', { runtime: 'python' });
  s.record('mcp_create_ms', performance.now() - t1);
  await tool('execute', { environment_id: env.environment_id, code: 'true', language: 'shell' });
  s.record('mcp_create_to_first_exec_ms', performance.now() - t1);
  if (last) envId = env.environment_id as string;
  else await tool('destroy_environment', { environment_id: env.environment_id });
}

const rawVm = raw as RawVM;
const script = `sh -c ${shellQuote(execScript({ id: 'bench', ext: 'sh', bytes: 4, interpreter: 'bash' }))}`;
log(`${EXECS} execute rounds, interleaved`);
for (let i = 0; i <= EXECS; i++) {
  const key = (k: string) => (i === 0 ? '_warmup' : k); // the first round warms connections and caches
  await s.timed(key('raw_exec_true_same_script_ms'), () =>
    runCommand(rawVm.client, script, Buffer.from('true')),
  );
  await s.timed(key('agent_exec_true_ms'), () => agentExec(agentVm, 'true', 'shell'));
  await s.timed(key('mcp_execute_true_ms'), () =>
    tool('execute', { environment_id: envId, code: 'true', language: 'shell' }),
  );
}

// Preview URLs: an HTTP GET of a small file served by python3 -m http.server in the guest,
// through the gateway's preview URL (gateway → node-agent ForwardPort over mTLS → SSH
// direct-tcpip) next to the same GET over a direct SSH tunnel to the raw VM (the floor).
const FILE = 'hello from the VM\n';
const serve = `mkdir -p /tmp/www && printf %s ${shellQuote(FILE)} > /tmp/www/f.txt && cd /tmp/www && (setsid python3 -m http.server 8000 > /dev/null 2>&1 < /dev/null &)`;
await runCommand(rawVm.client, serve);
await tool('execute', { environment_id: envId, language: 'shell', code: serve });
const rawGet = () =>
  new Promise<void>((resolve, reject) => {
    rawVm.client.forwardOut('127.0.0.1', 0, '127.0.0.1', 8000, (err, channel) => {
      if (err) return reject(err);
      const req = httpRequest({
        createConnection: () => channel as never,
        path: '/f.txt',
        headers: { connection: 'close' },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d));
        res.on('end', () =>
          body === FILE ? resolve() : reject(new Error(`raw GET: ${res.statusCode} ${body}`)),
        );
      });
      req.on('error', reject);
      req.end();
    });
  });
const waitListening = async (probe: () => Promise<unknown>) => {
  for (let i = 0; ; i++) {
    try {
      return await probe();
    } catch (err) {
      if (i > 60) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
};
await waitListening(rawGet);
const exposed = (await waitListening(() =>
  tool('expose_port', { environment_id: envId, port: 8000, public: true }),
)) as { url: string };
const previewGet = async () => {
  const res = await fetch(`${exposed.url}f.txt`);
  const body = await res.text();
  if (body !== FILE) throw new Error(`preview GET: ${res.status} ${body}`);
};
log(`${EXECS} preview GET rounds, interleaved`);
for (let i = 0; i <= EXECS; i++) {
  const key = (k: string) => (i === 0 ? '_warmup' : k);
  await s.timed(key('raw_ssh_tunnel_http_get_ms'), rawGet);
  await s.timed(key('preview_url_http_get_ms'), previewGet);
}

await rawVm.stop();
await agent.destroyVM({ vmId: agentVm });
await tool('destroy_environment', { environment_id: envId });
await mcp.close();
await k(['delete', 'namespace', ns, '--wait=false']);

const r = s.summary();
const p50 = (key: string) => r[key]?.p50 ?? Number.NaN;
const out = {
  benchmark: 'end-to-end',
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', accelerator: accel.accelerator },
  path: 'MCP SDK client → gateway Service (ClusterIP) → gateway pod → node-agent (node IP) → guest SSH; previews: HTTP client → gateway Service → gateway pod → node-agent ForwardPort → SSH direct-tcpip',
  runs: { boots: BOOTS, execs: EXECS },
  results: r,
  targets: {
    mcp_execute_overhead_p50_ms: {
      value: Math.round((p50('mcp_execute_true_ms') - p50('agent_exec_true_ms')) * 10) / 10,
      limit: 15,
      pass: p50('mcp_execute_true_ms') - p50('agent_exec_true_ms') <= 15,
    },
    mcp_create_overhead_p50_ms: {
      value: Math.round((p50('mcp_create_ms') - p50('agent_create_rpc_ms')) * 10) / 10,
      limit: 300,
      pass: p50('mcp_create_ms') - p50('agent_create_rpc_ms') <= 300,
    },
  },
};
console.log(JSON.stringify(out, null, 2));
if (values.markdown) {
  const row = (label: string, key: string) =>
    `| ${label} | ${r[key]?.p50 ?? '–'} | ${r[key]?.p95 ?? '–'} | ${r[key]?.n ?? 0} |`;
  console.log(
    [
      '',
      `End to end, ${out.machine.cpus} × ${out.machine.model}, accelerator ${out.machine.accelerator}, ${out.date.slice(0, 10)}:`,
      '',
      '| measurement (ms) | p50 | p95 | n |',
      '| --- | --- | --- | --- |',
      row('raw QEMU + SSH: boot → first `true`', 'raw_boot_to_ssh_ms'),
      row('node-agent CreateVM (RPC)', 'agent_create_rpc_ms'),
      row('node-agent CreateVM → first Exec', 'agent_create_to_first_exec_ms'),
      row('MCP create_environment', 'mcp_create_ms'),
      row('MCP create_environment → first execute', 'mcp_create_to_first_exec_ms'),
      row('raw SSH, same exec script', 'raw_exec_true_same_script_ms'),
      row('node-agent Exec `true`', 'agent_exec_true_ms'),
      row('MCP execute `true`', 'mcp_execute_true_ms'),
      row('raw SSH tunnel: HTTP GET of a small file', 'raw_ssh_tunnel_http_get_ms'),
      row('preview URL (gateway → node-agent → SSH): same GET', 'preview_url_http_get_ms'),
      '',
      `MCP execute overhead over the node-agent path (p50): ${out.targets.mcp_execute_overhead_p50_ms.value} ms (target ≤ 15 ms: ${out.targets.mcp_execute_overhead_p50_ms.pass ? 'met' : 'missed'}); ` +
        `create_environment over CreateVM (p50): ${out.targets.mcp_create_overhead_p50_ms.value} ms (target ≤ 300 ms: ${out.targets.mcp_create_overhead_p50_ms.pass ? 'met' : 'missed'}).`,
    ].join('\n'),
  );
}
process.exit(0);
