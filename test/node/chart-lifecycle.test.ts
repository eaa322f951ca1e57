// The Helm chart's life on the real node, in order: install, run code, the node's certificate,
// agent pod deletion and container crash, upgrade, CA replacement, uninstall, a Helm 3 install;
// then `pnpm waggle down` removes everything (so this file runs last: ./sequencer.ts).
import { X509Certificate } from 'node:crypto';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { nodeAgentServerName } from '@waggle/node-agent/client';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { grantAgent } from '../src/agent-identity.ts';
import { clusterDown, clusterStatus, hostLeftovers } from '../src/cluster/local-cluster.ts';
import { pidsMentioning } from '../src/control-plane.ts';
import { ensureHelm, HELM3_VERSION } from '../src/helm.ts';
import { CHART_REPOSITORY, helmRun, installWaggle, publishChart, RELEASE } from '../src/stack.ts';
import { waitFor } from '../src/wait.ts';
import {
  AGENTS,
  allReady,
  environmentQemuPids,
  k,
  mcpClient,
  NS,
  podsReady,
  qemuPids,
  REPO,
  run,
  stack,
  startWithoutWaggle,
  tool,
} from './fixture.ts';

startWithoutWaggle();

describe('the Helm chart installed on the real node', () => {
  it('installs: two operator replicas, the gateway and the node-agent become Ready', async () => {
    await installWaggle(stack);
    const pods = await waitFor(podsReady, allReady, 'every pod Ready', {
      timeoutMs: 120_000,
      intervalMs: 1_000,
    });
    const names = pods.map((p) => p.metadata.name);
    expect(names.filter((n) => n.startsWith(`${RELEASE}-operator-`))).toHaveLength(2);
    expect(names.filter((n) => n.startsWith(`${RELEASE}-gateway-`))).toHaveLength(1);
    expect(names.filter((n) => n.startsWith(`${RELEASE}-node-agent-`))).toHaveLength(1);
    // A previous release's leader may still hold the Lease until it expires (its RBAC can be
    // gone before it gets to release it); one of these replicas takes it within the duration.
    const holder = await waitFor(
      async () =>
        (
          await k(['get', 'lease', '-n', NS, `${RELEASE}-operator`, '-o', 'jsonpath={.spec.holderIdentity}'])
        ).trim(),
      (h) => names.includes(h),
      'one of the new operator replicas to lead',
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
    expect(names).toContain(holder);
    const nodes = await waitFor(
      () => k(['get', 'wagglenodes']),
      (out) => /waggle-node\s+True\s+tcg\s+0\/8/.test(out),
      'the WaggleNode to be Ready',
      { timeoutMs: 60_000 },
    );
    expect(nodes.split('\n')[0]).toMatch(/^NAME\s+READY\s+ACCEL\s+VMS\s+AGE$/);
    // Operator and gateway reach the agent over mutual TLS with the chart's certificates.
    expect(await k(['get', 'wagglenode', 'waggle-node', '-o', 'jsonpath={.status.endpoint}'])).toBe(
      'https://10.250.255.1:7443',
    );
  });

  it("was installed from the chart archive pushed to the node's OCI registry", async () => {
    const { ref, version, digest } = await publishChart(stack);
    expect(ref).toBe(`${CHART_REPOSITORY}/waggle`);
    expect(digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    const shown = await helmRun(stack, ['show', 'chart', ref, '--version', version, '--plain-http']);
    expect(shown).toMatch(/^name: waggle$/m);
    expect(shown).toContain(`version: ${version}`);
    // The release came from that archive (installWaggle installs from the registry).
    const release = JSON.parse(await helmRun(stack, ['list', '-n', NS, '-o', 'json'])) as Array<{
      chart: string;
    }>;
    expect(release.map((r) => r.chart)).toEqual([`waggle-${version}`]);
  });

  it('passes helm test: a pod creates an environment through the MCP Service, runs code and destroys it', async () => {
    const pod = `${RELEASE}-test`;
    // --logs prints the pod's log before the hook-succeeded policy deletes it.
    const out = await helmRun(stack, ['test', RELEASE, '--namespace', NS, '--timeout', '5m', '--logs']).catch(
      async (err: Error) => {
        // A failed test pod stays: say what it printed.
        const log = await k(['logs', '-n', NS, pod]).catch((e: Error) => `(no log: ${e.message})`);
        throw new Error(`${err.message}\n--- ${pod} printed ---\n${log}`);
      },
    );
    expect(out).toMatch(new RegExp(`TEST SUITE:\\s+${pod}[\\s\\S]*Phase:\\s+Succeeded`));
    const printed = out.slice(out.indexOf('POD LOGS:'));
    expect(printed).toMatch(/environment \S+ running after/);
    expect(printed).toContain('execute printed 42');
    expect(printed).toMatch(/environment \S+ destroyed/);
    // Nothing left behind: the environment is gone and so are the hook's objects.
    await waitFor(
      () => k(['get', 'wenv', '-n', NS, '-o', 'name']),
      (o) => o.trim() === '',
      'the helm test environment to be deleted',
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
    expect(
      await k([
        'get',
        'pod,serviceaccount,rolebinding,configmap',
        '-n',
        NS,
        pod,
        '--ignore-not-found',
        '-o',
        'name',
      ]),
    ).toBe('');
  });

  let token = '';
  let envId = '';
  let vmPid = 0;
  /** Runs python in the environment through a new MCP session; returns its stdout. */
  const pythonOut = async (code: string): Promise<string> => {
    const c = await mcpClient(token);
    try {
      return (await tool<{ stdout: string }>(c, 'execute', { environment_id: envId, code })).stdout;
    } finally {
      await c.close();
    }
  };

  it('runs code in an environment created through the gateway Service', async () => {
    token = await grantAgent(k, { namespace: AGENTS });
    const c = await mcpClient(token);
    try {
      const env = await tool<{ environment_id: string; status: string }>(c, 'create_environment', {
        runtime: 'python',
      });
      expect(env.status).toBe('running');
      envId = env.environment_id;
      const out = await tool<{ stdout: string; exit_code: number }>(c, 'execute', {
        environment_id: envId,
        code: 'import os\nprint(os.uname().sysname, os.getuid())',
      });
      expect(out).toMatchObject({ stdout: 'Linux 1000\n', exit_code: 0 });
    } finally {
      await c.close();
    }
    const wenv = await k(['get', 'wenv', '-n', AGENTS]);
    expect(wenv.split('\n')[0]).toMatch(/^NAME\s+RUNTIME\s+PHASE\s+NODE\s+EXPIRES\s+AGE$/);
    expect(wenv).toMatch(new RegExp(`${envId}\\s+python\\s+Running\\s+waggle-node\\s+\\d{4}-\\d\\d-\\d\\dT`));
    // The VMs column is the agent's heartbeat (every 10 s by default), not a per-create write.
    await waitFor(
      () => k(['get', 'wagglenodes', '--no-headers']),
      (out) => /waggle-node\s+True\s+tcg\s+1\/8/.test(out),
      'the WaggleNode to count the environment (VMs 1/8) at its next heartbeat',
      { timeoutMs: 30_000, intervalMs: 1_000 },
    );
    const pids = await environmentQemuPids();
    expect(pids).toHaveLength(1);
    vmPid = pids[0] as number;
    // The node-agent image's QEMU (Debian 13: QEMU 10, which has no -runas) still drops to the
    // VM's own uid and gid and chroots into the VM's empty directory.
    const status = await readFile(`/proc/${vmPid}/status`, 'utf8');
    for (const field of ['Uid', 'Gid']) {
      const ids = (new RegExp(`^${field}:\\s+(.+)$`, 'm').exec(status)?.[1] ?? '').split(/\s+/).map(Number);
      expect(ids, field).toHaveLength(4);
      for (const id of ids) expect(id, `${field} of QEMU`).toBeGreaterThanOrEqual(2 ** 30);
    }
    expect(await readlink(`/proc/${vmPid}/root`)).toMatch(/\/vms\/[^/]+\/root$/);
  });

  it('the node-agent serves a certificate naming its node, issued through a CSR the operator signed; no release holds a key', async () => {
    const secret = async (name: string) => {
      const s = JSON.parse(await k(['get', 'secret', '-n', NS, name, '-o', 'json'])) as {
        data: Record<string, string>;
      };
      return (key: string) => Buffer.from(s.data[key] ?? '', 'base64').toString('utf8');
    };
    const lifetime = (c: X509Certificate) => c.validToDate.getTime() - c.validFromDate.getTime();
    // The operator's leader made the CA: its Secret is in no Helm release, and no Secret of the
    // release carries a certificate or a key.
    const manifest = await helmRun(stack, ['get', 'manifest', RELEASE, '--namespace', NS]);
    const docs = parseAllDocuments(manifest).map(
      (d) =>
        d.toJS() as { kind?: string; metadata?: { name?: string }; data?: Record<string, string> } | null,
    );
    expect(docs.some((d) => d?.kind === 'Deployment')).toBe(true);
    const pkiInRelease = docs.filter(
      (d) =>
        d?.kind === 'Secret' &&
        (/agent/.test(d.metadata?.name ?? '') ||
          Object.keys(d.data ?? {}).some((k) => /\.(key|crt)$/.test(k))),
    );
    expect(pkiInRelease).toEqual([]);
    const caPem = (await secret(`${RELEASE}-agent-ca-key`))('ca.crt');
    const ca = new X509Certificate(caPem);
    expect(ca.ca).toBe(true);
    expect(
      await k(['get', 'configmap', '-n', NS, `${RELEASE}-agent-ca`, '-o', 'jsonpath={.data.ca\\.crt}']),
    ).toBe(caPem);
    // Client identities: short-lived, client usage only.
    for (const name of ['operator-agent-identity', 'gateway-agent-identity']) {
      const cert = new X509Certificate((await secret(`${RELEASE}-${name}`))('tls.crt'));
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(lifetime(cert)).toBeLessThanOrEqual(24 * 3_600_000 + 120_000);
      expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    }
    // The CSR: requested by the node-agent ServiceAccount from a token the apiserver bound to
    // the node, approved by the operator for that node, and its certificate is the one served.
    const csrs = JSON.parse(
      await k([
        'get',
        'csr',
        '--field-selector',
        `spec.signerName=waggle.dev/${NS}.${RELEASE}-node-agent`,
        '-o',
        'json',
      ]),
    ) as {
      items: Array<{
        spec: { username: string; extra?: Record<string, string[]> };
        status: { certificate?: string; conditions?: Array<{ type: string; reason: string }> };
      }>;
    };
    const issued = csrs.items.filter((c) => c.status.certificate);
    expect(issued.length).toBeGreaterThanOrEqual(1);
    for (const c of issued) {
      expect(c.spec.username).toBe(`system:serviceaccount:${NS}:${RELEASE}-node-agent`);
      expect(c.spec.extra?.['authentication.kubernetes.io/node-name']).toEqual(['waggle-node']);
      expect(c.status.conditions?.find((x) => x.type === 'Approved')?.reason).toBe('NodeIdentityVerified');
    }
    const serials = issued.map(
      (c) => new X509Certificate(Buffer.from(c.status.certificate as string, 'base64')).serialNumber,
    );

    const client = await secret(`${RELEASE}-operator-agent-identity`);
    const served = (node: string) =>
      new Promise<X509Certificate | string>((resolve) => {
        const s = tlsConnect({
          host: '10.250.255.1',
          port: 7443,
          servername: nodeAgentServerName(node), // verified as the operator and gateway verify it
          ca: client('ca.crt'),
          cert: client('tls.crt'),
          key: client('tls.key'),
          ALPNProtocols: ['h2'],
        });
        s.once('secureConnect', () => {
          resolve(new X509Certificate(s.getPeerX509Certificate()?.raw as Buffer));
          s.destroy();
        });
        s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
    const cert = await served('waggle-node');
    expect(cert).toBeInstanceOf(X509Certificate);
    const c0 = cert as X509Certificate;
    expect(c0.subjectAltName).toBe(`DNS:${nodeAgentServerName('waggle-node')}`);
    expect(c0.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(c0.verify(ca.publicKey)).toBe(true);
    expect(lifetime(c0)).toBeLessThanOrEqual(24 * 3_600_000 + 120_000);
    expect(serials).toContain(c0.serialNumber);
    // A caller that means another node refuses this node's certificate.
    expect(await served('other-node')).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    // Its key was made on the node: it is in the agent's state directory, in no Secret.
    const keyFile = await readFile(join(stack.cluster.paths.base, 'node-agent', 'pki', 'tls.key'), 'utf8');
    expect(keyFile).toMatch(/BEGIN PRIVATE KEY/);
    expect(await pythonOut('print(2*21)')).toBe('42\n');
  });

  it('keeps environments usable when the node-agent pod is deleted', async () => {
    await k(['delete', 'pod', '-n', NS, '-l', 'app.kubernetes.io/component=node-agent', '--wait=true']);
    await waitFor(podsReady, allReady, 'the node-agent to be recreated and Ready', {
      timeoutMs: 120_000,
      intervalMs: 1_000,
    });
    expect(await environmentQemuPids()).toEqual([vmPid]); // the same QEMU process, adopted by the new agent
    expect(await pythonOut('print("still here")')).toBe('still here\n');
    expect(await k(['get', 'wenv', '-n', AGENTS, envId, '--no-headers'])).toMatch(/Running/);
  });

  it('keeps environments usable when the node-agent container crashes and the kubelet restarts it', async () => {
    const restarts = async () =>
      Number(
        await k([
          'get',
          'pods',
          '-n',
          NS,
          '-l',
          'app.kubernetes.io/component=node-agent',
          '-o',
          'jsonpath={.items[0].status.containerStatuses[0].restartCount}',
        ]),
      );
    const before = await restarts();
    const agentPids = await pidsMentioning('/opt/waggle/node-agent/dist/main.js');
    expect(agentPids).toHaveLength(1);
    process.kill(agentPids[0] as number, 'SIGKILL'); // a crash: the runtime kills the container's cgroup
    await waitFor(restarts, (n) => n === before + 1, 'the kubelet to restart the agent container', {
      timeoutMs: 120_000,
      intervalMs: 1_000,
    });
    await waitFor(podsReady, allReady, 'the restarted node-agent to be Ready', {
      timeoutMs: 120_000,
      intervalMs: 1_000,
    });
    expect(await environmentQemuPids()).toEqual([vmPid]); // outside the container's cgroup: untouched
    expect(await pythonOut('print("survived a crash")')).toBe('survived a crash\n');
  });

  it('rolls out a helm upgrade with a changed value without losing the running environment', async () => {
    const before = (await podsReady()).map((p) => p.metadata.name);
    await installWaggle(stack, ['--set', 'gateway.maxEnvironments=20', '--set', 'operator.logLevel=debug']);
    const after = await waitFor(
      podsReady,
      (items) =>
        allReady(items) &&
        items.filter((p) => p.metadata.name.startsWith(`${RELEASE}-operator-`)).length === 2,
      'the rollout to finish',
      { timeoutMs: 180_000, intervalMs: 1_000 },
    );
    const changed = after.map((p) => p.metadata.name).filter((n) => !before.includes(n));
    expect(
      changed.filter((n) => n.includes('-gateway-') || n.includes('-operator-')).length,
    ).toBeGreaterThanOrEqual(3);
    const env = JSON.parse(await k(['get', 'deploy', '-n', NS, `${RELEASE}-gateway`, '-o', 'json'])) as {
      spec: { template: { spec: { containers: Array<{ env: Array<{ name: string; value?: string }> }> } } };
    };
    expect(
      env.spec.template.spec.containers[0]?.env.find((e) => e.name === 'WAGGLE_MAX_ENVIRONMENTS')?.value,
    ).toBe('20');
    expect(await environmentQemuPids()).toEqual([vmPid]);
    expect(await pythonOut('print(6*7)')).toBe('42\n');
  });

  it('replaces the CA when its Secret is deleted: identities and the node certificate are reissued, no pod restarts, the environment stays usable', async () => {
    const caOf = () =>
      k(
        ['get', 'secret', '-n', NS, `${RELEASE}-agent-ca-key`, '-o', 'jsonpath={.data.ca\\.crt}'],
        undefined,
      ).catch(() => '');
    const caBefore = await caOf();
    expect(caBefore).not.toBe('');
    const before = (await podsReady()).map((p) => p.metadata.name);
    await k(['delete', 'secret', '-n', NS, `${RELEASE}-agent-ca-key`]);
    // The leader notices at its next check (WAGGLE_AGENT_CERT_CHECK_INTERVAL, 1 min) and makes a new CA.
    const caAfter = await waitFor(caOf, (c) => c !== '' && c !== caBefore, 'a new CA', {
      timeoutMs: 120_000,
      intervalMs: 2_000,
    });
    const ca = new X509Certificate(Buffer.from(caAfter, 'base64'));
    // The kubelet refreshes the gateway's Secret and the agent's ConfigMap (about a minute); the
    // agent then requests a certificate from the new CA and serves it without restarting.
    const identity = JSON.parse(
      await k(['get', 'secret', '-n', NS, `${RELEASE}-operator-agent-identity`, '-o', 'jsonpath={.data}']),
    ) as Record<string, string>;
    const f = (n: string) => Buffer.from(identity[n] ?? '', 'base64').toString('utf8');
    expect(new X509Certificate(f('tls.crt')).verify(ca.publicKey)).toBe(true);
    const servedByNewCA = () =>
      new Promise<boolean>((resolve) => {
        const s = tlsConnect({
          host: '10.250.255.1',
          port: 7443,
          servername: nodeAgentServerName('waggle-node'),
          ca: f('ca.crt'),
          cert: f('tls.crt'),
          key: f('tls.key'),
          ALPNProtocols: ['h2'],
        });
        s.once('secureConnect', () => {
          resolve(true);
          s.destroy();
        });
        s.once('error', () => resolve(false));
      });
    await waitFor(servedByNewCA, (ok) => ok, 'the agent to serve a certificate from the new CA', {
      timeoutMs: 240_000,
      intervalMs: 2_000,
    });
    expect((await podsReady()).map((p) => p.metadata.name).sort()).toEqual([...before].sort());
    expect(await environmentQemuPids()).toEqual([vmPid]);
    // The gateway picks up its reissued identity from its refreshed Secret (about a minute).
    const out = await waitFor(
      async () => {
        const c = await mcpClient(token).catch((err: Error) => err);
        if (c instanceof Error) return { stdout: c.message };
        try {
          return await tool<{ stdout: string }>(c, 'execute', {
            environment_id: envId,
            code: 'print(7*6)',
          }).catch((err: Error) => ({ stdout: err.message }));
        } finally {
          await c.close();
        }
      },
      (o) => o.stdout === '42\n',
      'the gateway to reach the agent with its reissued identity',
      { timeoutMs: 180_000, intervalMs: 5_000 },
    );
    expect(out.stdout).toBe('42\n');
  }, 600_000);

  it('uninstalls leaving no pod, no QEMU process, no overlay and no VM state; the CRDs stay', async () => {
    await helmRun(stack, ['uninstall', RELEASE, '--namespace', NS, '--wait', '--timeout', '5m']);
    await waitFor(podsReady, (items) => items.length === 0, 'every pod gone', {
      timeoutMs: 120_000,
      intervalMs: 1_000,
    });
    expect(await qemuPids()).toEqual([]);
    const stateDir = join(stack.cluster.paths.base, 'node-agent');
    const vmsLeft = await readdir(join(stateDir, 'vms')).catch(() => [] as string[]);
    expect(vmsLeft).toEqual([]);
    // Template snapshots are a node cache (bounded by nodeAgent.maxSnapshots, reused by a
    // reinstall, documented in the chart README); no VM's overlay may remain anywhere else.
    const overlays = (
      await run('find', [
        stateDir,
        '-path',
        join(stateDir, 'snapshots'),
        '-prune',
        '-o',
        '-name',
        '*.qcow2',
        '-print',
      ]).catch(() => ({ stdout: '' }))
    ).stdout.trim();
    expect(overlays).toBe('');
    const snapshots = await readdir(join(stateDir, 'snapshots')).catch(() => [] as string[]);
    expect(snapshots.length).toBeLessThanOrEqual(8);
    for (const s of snapshots) {
      // Only complete snapshots (frozen disk, saved state, meta written last): no job's temp dir.
      expect(s).toMatch(/^[0-9a-f]{16}$/);
      expect(await readdir(join(stateDir, 'snapshots', s)), s).toEqual(
        expect.arrayContaining(['disk.qcow2', 'state', 'snapshot.json']),
      );
    }
    expect(await k(['get', 'wenv', '-A', '--no-headers'])).toBe('');
    expect(await k(['get', 'wagglenodes', '--no-headers'])).toBe('');
    // What the operator made for mTLS (in no release) is removed by the cleanup hook, CSRs too.
    expect(await k(['get', 'secret,configmap', '-n', NS, '-o', 'name'])).not.toMatch(
      /agent-ca|agent-identity/,
    );
    expect(
      await k([
        'get',
        'csr',
        '--field-selector',
        `spec.signerName=waggle.dev/${NS}.${RELEASE}-node-agent`,
        '-o',
        'name',
      ]),
    ).toBe('');
    expect(await k(['get', 'crd', 'waggleenvironments.waggle.dev', '-o', 'name'])).toMatch(
      /waggleenvironments\.waggle\.dev/,
    );
  });

  it('installs with Helm 3 as well: pods Ready, code runs over its mTLS certificates', async () => {
    const helm3 = { ...stack, helm: await ensureHelm({ version: HELM3_VERSION }) };
    await installWaggle(helm3);
    expect(await helmRun(helm3, ['list', '-n', NS, '-o', 'json'])).toMatch(/"app_version"/);
    const pods = await waitFor(podsReady, allReady, 'every pod Ready', {
      timeoutMs: 120_000,
      intervalMs: 1_000,
    });
    expect(pods.filter((p) => p.metadata.name.startsWith(`${RELEASE}-operator-`))).toHaveLength(2);
    // Under Helm 3 too the operator makes the CA and the client identities (the chart none).
    expect(
      await waitFor(
        async () =>
          (await k(['get', 'secret', '-n', NS, '-l', 'app.kubernetes.io/component=agent-pki', '-o', 'name']))
            .split('\n')
            .filter(Boolean)
            .sort(),
        (names) => names.length === 3,
        'the operator-made Secrets',
        { timeoutMs: 60_000 },
      ),
    ).toEqual(
      ['agent-ca-key', 'gateway-agent-identity', 'operator-agent-identity'].map(
        (n) => `secret/${RELEASE}-${n}`,
      ),
    );
    await waitFor(
      () => k(['get', 'wagglenodes']),
      (out) => /waggle-node\s+True\s+tcg\s+0\/8/.test(out),
      'the WaggleNode to be Ready',
      { timeoutMs: 60_000 },
    );
    const c = await mcpClient(await grantAgent(k, { namespace: AGENTS }));
    try {
      const env = await tool<{ environment_id: string }>(c, 'create_environment', { runtime: 'python' });
      const out = await tool<{ stdout: string }>(c, 'execute', {
        environment_id: env.environment_id,
        code: 'print("helm 3")',
      });
      expect(out.stdout).toBe('helm 3\n');
    } finally {
      await c.close();
    }
    // The release and its running VM stay: `pnpm waggle down` (next) must remove both.
    expect(await environmentQemuPids()).toHaveLength(1);
  });
});

describe('cluster down', () => {
  it('pnpm waggle down removes everything the cluster created on this machine, running VMs included', async () => {
    const paths = stack.cluster.paths;
    expect(await environmentQemuPids()).toHaveLength(1); // the Helm 3 install's environment, still running
    const cli = join(REPO, 'test', 'src', 'cli', 'main.ts');
    await run(process.execPath, [cli, 'down'], { maxBuffer: 16 << 20, timeout: 300_000 });
    expect(await qemuPids()).toEqual([]);
    expect(await hostLeftovers(paths)).toEqual({
      mounts: [],
      netns: [],
      nftTables: [],
      bridge: false,
      nodeAddress: false,
      iptables: [],
      cgroups: [],
      processes: [],
      cniState: [],
    });
    expect(await pidsMentioning(paths.base)).toEqual([]);
    expect(await pidsMentioning('loopback-proxy.ts')).toEqual([]); // pnpm waggle up's forwarder
    expect(await readdir(paths.base).catch(() => 'gone')).toBe('gone');
    expect(await readdir(paths.run).catch(() => 'gone')).toBe('gone');
    expect((await clusterStatus()).components).toEqual([]);
    // A second down has nothing left to do and still succeeds.
    await clusterDown();
  });
});
