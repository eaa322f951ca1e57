// `pnpm waggle <up|down|status|doctor>`: Waggle on a local single-node cluster in one command.
import { access, readFile, statfs } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createTokenCommand, grantAgent } from './agent-identity.ts';
import { cacheRoot } from './cache.ts';
import { type DaemonSpec, daemonPid, ensureDaemon, stopDaemon } from './cluster/daemons.ts';
import { sh } from './cluster/host.ts';
import { clusterPaths } from './cluster/layout.ts';
import { clusterDown, clusterStatus, REQUIRED_TOOLS } from './cluster/local-cluster.ts';
import { helmPath } from './helm.ts';
import { kubeBinDir } from './kube-binaries.ts';
import { installWaggle, type LocalStack, prepareLocalStack, RELEASE, RELEASE_NAMESPACE } from './stack.ts';

const DEMO_NAMESPACE = 'waggle-demo';
const DEMO_SA = 'agent';
const PORT = Number(process.env.WAGGLE_UP_PORT ?? 8080);
const MCP_URL = `http://127.0.0.1:${PORT}/mcp`;
const say = (l: string) => process.stderr.write(`${l}\n`);

const proxyDaemon = (target: string): DaemonSpec => {
  const p = clusterPaths();
  return {
    name: 'mcp-proxy',
    command: process.execPath,
    args: [join(import.meta.dirname, 'loopback-proxy.ts'), `127.0.0.1:${PORT}`, target],
    logPath: join(p.logs, 'mcp-proxy.log'),
    pidPath: join(p.pids, 'mcp-proxy.pid'),
  };
};

const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });

/** POSTs an MCP initialize with the token; true when the gateway answers 200. */
async function mcpAnswers(token: string): Promise<boolean> {
  const r = await fetch(MCP_URL, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-11-25',
        capabilities: {},
        clientInfo: { name: 'waggle-up', version: '1' },
      },
    }),
  }).catch(() => undefined);
  await r?.body?.cancel();
  return r?.status === 200;
}

async function up(): Promise<void> {
  const t0 = Date.now();
  let n = 0;
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    n++;
    say(`[${n}/5] ${name}…`);
    const t = Date.now();
    const r = await fn();
    say(`[${n}/5] ${name} ✓ ${((Date.now() - t) / 1000).toFixed(1)} s`);
    return r;
  };
  const stack: LocalStack = await step('local cluster and images', () =>
    prepareLocalStack({ log: (l) => say(`      ${l}`) }),
  );
  await step('helm upgrade --install waggle charts/waggle', () => installWaggle(stack));
  const token = await step(`demo ServiceAccount ${DEMO_NAMESPACE}/${DEMO_SA}`, () =>
    grantAgent(stack.cluster.k, { namespace: DEMO_NAMESPACE, serviceAccount: DEMO_SA, duration: '24h' }),
  );
  await step(`gateway on ${MCP_URL}`, async () => {
    const ip = (
      await stack.cluster.k([
        'get',
        'svc',
        '-n',
        RELEASE_NAMESPACE,
        `${RELEASE}-mcp`,
        '-o',
        'jsonpath={.spec.clusterIP}',
      ])
    ).trim();
    const spec = proxyDaemon(`${ip}:8080`);
    if (!(await daemonPid(spec)) && !(await portFree(PORT))) {
      throw new Error(`port ${PORT} on 127.0.0.1 is taken by another program; free it or set WAGGLE_UP_PORT`);
    }
    await ensureDaemon(spec);
  });
  await step('MCP endpoint answers', async () => {
    const deadline = Date.now() + 60_000;
    while (!(await mcpAnswers(token))) {
      if (Date.now() > deadline)
        throw new Error(`${MCP_URL} did not answer within 60 s; see pnpm waggle status`);
      await new Promise((r) => setTimeout(r, 500));
    }
  });
  const kubectl = join(await kubeBinDir(), 'kubectl');
  const snippet = {
    mcpServers: { waggle: { type: 'http', url: MCP_URL, headers: { Authorization: `Bearer ${token}` } } },
  };
  const vscode = {
    servers: { waggle: { type: 'http', url: MCP_URL, headers: { Authorization: `Bearer ${token}` } } },
  };
  console.log(`
Waggle is up (${((Date.now() - t0) / 1000).toFixed(0)} s).

MCP URL:  ${MCP_URL}
Token:    ${token}
          (ServiceAccount ${DEMO_NAMESPACE}/${DEMO_SA}, valid 24 h; run pnpm waggle up again for a new one, or
           KUBECONFIG=${stack.cluster.kubeconfigPath} ${kubectl} ${createTokenCommand(DEMO_SA, DEMO_NAMESPACE, '24h').join(' ')})

Claude Code (.mcp.json):
${JSON.stringify(snippet, null, 2)}

VS Code (.vscode/mcp.json):
${JSON.stringify(vscode, null, 2)}

Watch environments:
  KUBECONFIG=${stack.cluster.kubeconfigPath} ${kubectl} get wenv -A

Stop everything: pnpm waggle down`);
}

async function down(): Promise<void> {
  await stopDaemon(proxyDaemon('-'));
  await clusterDown({ log: say });
  say('Waggle is down; nothing of the local cluster is left on this machine.');
}

async function status(): Promise<number> {
  const st = await clusterStatus();
  if (st.components.length === 0) {
    console.log('Waggle is not running. Start it with: pnpm waggle up');
    return 1;
  }
  let healthy = true;
  console.log('local cluster:');
  for (const c of st.components) {
    console.log(
      `  ${c.running ? '●' : '○'} ${c.name}${c.running ? '' : ' — not running (pnpm waggle up restarts it)'}`,
    );
    healthy &&= c.running;
  }
  if (!healthy) return 1;
  const k = async (args: string[]) =>
    sh(join(await kubeBinDir(), 'kubectl'), ['--kubeconfig', st.kubeconfigPath, ...args], true);
  const pods = (await k(['get', 'pods', '-n', RELEASE_NAMESPACE, '--no-headers'])).trim();
  console.log(`waggle (namespace ${RELEASE_NAMESPACE}):`);
  if (!pods) {
    console.log('  not installed — pnpm waggle up installs it');
    return 1;
  }
  for (const line of pods.split('\n')) {
    const [name, ready, state] = line.split(/\s+/);
    const ok = state === 'Running' && ready?.split('/')[0] === ready?.split('/')[1];
    healthy &&= ok;
    console.log(`  ${ok ? '●' : '○'} ${name} ${ready} ${state}`);
  }
  console.log('nodes that run microVMs:');
  console.log(
    (await k(['get', 'wagglenodes'])).replace(/^/gm, '  ').trimEnd() || '  none — is the node-agent running?',
  );
  const envs = (await k(['get', 'wenv', '-A', '--no-headers'])).trim();
  console.log(`environments: ${envs ? envs.split('\n').length : 0}`);
  const proxy = await daemonPid(proxyDaemon('-'));
  const reachable = await fetch(MCP_URL.replace(/\/mcp$/, '/healthz')).then(
    (r) => r.ok,
    () => false,
  );
  console.log(
    `MCP endpoint: ${MCP_URL} ${reachable ? '● reachable' : `○ not reachable${proxy ? '' : ' (the loopback forwarder is not running; pnpm waggle up starts it)'}`}`,
  );
  return healthy && reachable ? 0 : 1;
}

type Check = { ok: boolean | 'warn'; what: string; detail: string };

async function doctor(): Promise<number> {
  const checks: Check[] = [];
  const add = (ok: Check['ok'], what: string, detail: string) => checks.push({ ok, what, detail });
  const exists = (p: string) =>
    access(p).then(
      () => true,
      () => false,
    );

  add(
    process.getuid?.() === 0,
    'running as root',
    process.getuid?.() === 0
      ? 'yes'
      : 'the local cluster needs root (kubelet, containerd, iptables): use sudo',
  );
  add(
    process.versions.node.startsWith('26.'),
    'Node.js 26',
    `this is Node ${process.versions.node}${process.versions.node.startsWith('26.') ? '' : '; run bash test/scripts/setup.sh'}`,
  );
  const go = (await sh('go', ['env', 'GOVERSION'], true)).trim();
  const goMinor = Number(/^go1\.(\d+)/.exec(go)?.[1] ?? 0);
  const kubeCached = await exists(join(await kubeBinDir(), 'kubelet'));
  add(
    kubeCached || goMinor >= 25,
    'Kubernetes binaries',
    kubeCached
      ? `built (${await kubeBinDir()})`
      : go
        ? `not built yet; ${go} will build them (~12 min, once)`
        : 'not built, and Go ≥ 1.25 is missing to build them',
  );
  add((await exists(helmPath())) ? true : 'warn', 'helm', 'built once from its Go module by setup.sh');
  const tools: Array<readonly [string, string]> = [
    ...REQUIRED_TOOLS,
    ['/usr/bin/qemu-system-x86_64', 'qemu-system-x86'],
    ['/usr/bin/mmdebstrap', 'mmdebstrap'],
  ];
  const missing: string[] = [];
  for (const [path, pkg] of tools) if (!(await exists(path)) && !missing.includes(pkg)) missing.push(pkg);
  add(
    missing.length === 0,
    'host packages',
    missing.length
      ? `missing: ${missing.join(', ')} — bash test/scripts/setup.sh installs them`
      : 'containerd (+ ctr), runc, CNI plugins, iptables, conntrack, podman, QEMU, mmdebstrap',
  );
  const ulimits = (await readFile('/etc/containers/containers.conf', 'utf8').catch(() => '')).includes(
    'default_ulimits',
  );
  add(
    ulimits ? true : 'warn',
    'podman limits',
    ulimits
      ? 'default_ulimits set'
      : 'no default_ulimits in /etc/containers/containers.conf; containers may fail with "error setting rlimit" (setup.sh sets it)',
  );
  const kvm = await exists('/dev/kvm');
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const hw = /\b(vmx|svm)\b/.test(cpuinfo);
  add(
    kvm && hw ? true : 'warn',
    'accelerator',
    kvm && hw
      ? '/dev/kvm with hardware virtualization: VMs use KVM'
      : `${kvm ? '/dev/kvm exists but the CPU reports no vmx/svm' : 'no /dev/kvm'}: VMs use TCG (software emulation) — they work, boots take seconds instead of ~100 ms`,
  );
  const guest = (
    await sh('bash', ['-c', `ls -d ${cacheRoot()}/images/rootfs-python-* 2>/dev/null | head -1`], true)
  ).trim();
  add(
    guest ? true : 'warn',
    'guest images',
    guest ? `cached in ${cacheRoot()}/images` : 'not built yet; setup.sh builds them (~3 min, once)',
  );
  const clusterUp = (await clusterStatus()).components.some((c) => c.running);
  // The MCP forward, apiserver, etcd, kubelet, kube-proxy health, controller-manager, scheduler,
  // and the node-agent's API and ops ports (host network).
  for (const port of [PORT, 6443, 12379, 12380, 10250, 10256, 10257, 10259, 7443, 7444]) {
    const free = await portFree(port);
    add(
      free || clusterUp,
      `port ${port}`,
      free
        ? 'free'
        : clusterUp
          ? 'in use by the running local cluster'
          : 'in use by another program; stop it (or set WAGGLE_UP_PORT for the MCP port)',
    );
  }
  for (const dir of ['/var/lib', cacheRoot()]) {
    const fs = await statfs(dir).catch(() => undefined);
    const gib = fs ? (fs.bavail * fs.bsize) / 2 ** 30 : 0;
    add(
      gib >= 10 ? true : gib >= 4 ? 'warn' : false,
      `disk space in ${dir}`,
      `${gib.toFixed(1)} GiB free${gib < 10 ? ' (images, guest disks and etcd need about 10 GiB)' : ''}`,
    );
  }
  for (const c of checks)
    console.log(`${c.ok === true ? '✓' : c.ok === 'warn' ? '!' : '✗'} ${c.what}: ${c.detail}`);
  const failed = checks.filter((c) => c.ok === false).length;
  console.log(
    failed ? `\n${failed} problem(s) to fix before pnpm waggle up.` : '\nReady for pnpm waggle up.',
  );
  return failed ? 1 : 0;
}

const USAGE = `usage: pnpm waggle <command>

  up       start the local single-node cluster, build and install Waggle, print the MCP URL and a token
  down     stop it and remove everything it created on this machine
  status   what runs, and whether the MCP endpoint answers
  doctor   check this machine (root, packages, accelerator, ports, disk)
`;

async function main(): Promise<number> {
  const { positionals } = parseArgs({ allowPositionals: true, options: {} });
  switch (positionals[0]) {
    case 'up':
      await up();
      return 0;
    case 'down':
      await down();
      return 0;
    case 'status':
      return status();
    case 'doctor':
      return doctor();
    default:
      process.stdout.write(USAGE);
      return positionals[0] ? 2 : 0;
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    say(`waggle: ${err.message}`);
    process.exit(1);
  },
);
