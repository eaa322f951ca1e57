import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Watch } from '@kubernetes/client-node';
import type { WaggleEnvironment, WagglePool, WaggleTemplate } from '@waggle/crds';
import { createNodeAgentClient } from '@waggle/node-agent/client';
import {
  type AgentProcess,
  applyCRDs,
  buildImage,
  busyboxLayer,
  deleteTestNamespace,
  freePorts,
  kubeClients,
  type LocalRegistry,
  push,
  startAgentProcess,
  startRegistry,
  waitFor,
} from '@waggle/test';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type RunningOperator, startOperator } from '../src/operator.ts';

const kubeconfigPath = inject('kubeconfigPath');
const { kc, custom, core } = kubeClients(kubeconfigPath);
const G = { group: 'waggle.dev', version: 'v1alpha1', plural: 'waggleenvironments' };
const namespace = `real-agent-${process.pid}`;
let stateDir = '';
let apiPort = 0;
let opsPort = 0;
const nodeName = `real-node-${process.pid}`;
let agent: AgentProcess;
let operator: RunningOperator;
let registry: LocalRegistry;
let privateRegistry: LocalRegistry;
/** Waggle's own namespace in this test: where templates' pull secrets are read. */
const waggleNamespace = `real-agent-sys-${process.pid}`;
const TEMPLATES = { group: 'waggle.dev', version: 'v1alpha1', plural: 'waggletemplates' };
/** What the operator and the agent logged (JSON lines, info and above). */
const operatorLines: Array<Record<string, unknown>> = [];
const agentLines: Array<Record<string, unknown>> = [];
const parseLine = (line: string): Record<string, unknown> | undefined => {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
};

const get = (name: string) =>
  custom.getNamespacedCustomObject({ ...G, namespace, name }).then(
    (o) => o as WaggleEnvironment,
    () => undefined,
  );

const createEnvironment = (name: string, spec: Record<string, unknown>) =>
  custom.createNamespacedCustomObject({
    ...G,
    namespace,
    body: { apiVersion: 'waggle.dev/v1alpha1', kind: 'WaggleEnvironment', metadata: { name }, spec },
  });
const createPythonEnvironment = (name: string) => createEnvironment(name, { runtime: 'python' });

const until = <T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs: number) =>
  waitFor(probe, ok, what, { timeoutMs, intervalMs: 250 });

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-op-agent-'));
  registry = await startRegistry();
  const bb = await buildImage(join(stateDir, 'oci'), 'bb', [busyboxLayer()]);
  await push(bb, `${registry.host}/tenant/busybox:1`);
  // Its own digest: no other test has pulled it before the template's pre-pull.
  await push(
    await buildImage(join(stateDir, 'oci'), 'prepull', [busyboxLayer(), { '/etc/prepulled': 'yes\n' }]),
    `${registry.host}/tenant/prepull:1`,
  );
  privateRegistry = await startRegistry({ auth: { user: 'puller', password: 'pr1vate' } });
  const auth = join(stateDir, 'auth.json');
  await writeFile(auth, privateRegistry.dockerConfigJson as string);
  await push(bb, `${privateRegistry.host}/team/busybox:1`, auth);
  await core.createNamespace({ body: { metadata: { name: waggleNamespace } } });
  [apiPort, opsPort] = (await freePorts(2)) as [number, number];
  await startAgent();
  operator = await startOperator({
    kc,
    log: pino(
      { level: 'info' },
      {
        write: (s: string) => {
          const l = parseLine(s);
          if (l) operatorLines.push(l);
        },
      },
    ),
    identity: 'real-agent-test',
    namespace,
    pullSecretNamespace: waggleNamespace,
    config: {
      workers: 2,
      resyncMs: 60_000,
      nodeCheckEveryMs: 1_000,
      nodeStaleAfterMs: 15_000,
      unschedulableRetryMs: 1_000,
      destroyTimeoutMs: 5_000,
      verifyEveryMs: 5_000,
      orphanVMCheckEveryMs: 1_000,
      orphanVMGraceMs: 0,
    },
  });
}, 900_000);

async function startAgent(): Promise<void> {
  agent = await startAgentProcess({
    apiPort,
    opsPort,
    env: {
      KUBECONFIG: kubeconfigPath,
      WAGGLE_NODE_NAME: nodeName,
      WAGGLE_STATE_DIR: stateDir,
      WAGGLE_GUEST_RUNTIMES: 'python',
      WAGGLE_HEARTBEAT_INTERVAL: '1s',
      WAGGLE_VM_NETWORK_CIDR: '10.253.27.0/24',
      WAGGLE_IMAGE_ALLOW: `${registry.host}/tenant/,${privateRegistry.host}/team/`,
      WAGGLE_IMAGE_INSECURE_REGISTRIES: `${registry.host},${privateRegistry.host}`,
      LOG_LEVEL: 'info',
    },
    onLine: (line) => {
      const l = parseLine(line);
      if (l) agentLines.push(l);
    },
  });
}

afterAll(async () => {
  await operator?.stop();
  // A failed test may leave a VM behind; it would outlive the agent process.
  const client = agent ? createNodeAgentClient(agent.apiUrl) : undefined;
  for (const vm of (await client?.listVMs({}).catch(() => undefined))?.vms ?? [])
    await client?.destroyVM({ vmId: vm.spec?.vmId ?? '' }).catch(() => undefined);
  await agent?.kill('SIGTERM');
  // Cluster-scoped: delete it after the agent is gone (it would re-register), see agent-api.test.
  await custom
    .deleteClusterCustomObject({
      group: 'waggle.dev',
      version: 'v1alpha1',
      plural: 'wagglenodes',
      name: nodeName,
    })
    .catch(() => undefined);
  await deleteTestNamespace(kc, namespace);
  await registry?.stop();
  await privateRegistry?.stop();
  await deleteTestNamespace(kc, waggleNamespace);
  await rm(stateDir, { recursive: true, force: true });
});

describe('operator with a real node-agent (real TCG VM)', () => {
  it('takes an environment from Pending to Running, runs code in it, and destroys the VM on delete', {
    timeout: 240_000,
  }, async () => {
    await createPythonEnvironment('real');
    const phases = new Set<string>();
    const running = await until(
      async () => {
        const e = await get('real');
        if (e?.status?.phase) phases.add(e.status.phase);
        return e;
      },
      (e) => e?.status?.phase === 'Running',
      'Running',
      180_000,
    );
    expect([...phases]).toEqual(expect.arrayContaining(['Booting', 'Running']));
    expect(running?.status?.vmId).toBe(running?.metadata.uid);
    expect(running?.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'True',
      reason: 'Running',
    });

    const client = createNodeAgentClient(agent.apiUrl);
    let stdout = '';
    for await (const m of client.exec({ vmId: running?.status?.vmId as string, code: 'print(6 * 7)' })) {
      if (m.event.case === 'result') stdout = m.event.value.stdout;
    }
    expect(stdout).toBe('42\n');

    await custom.deleteNamespacedCustomObject({ ...G, namespace, name: 'real' });
    await until(
      () => get('real'),
      (e) => e === undefined,
      'the object to disappear',
      60_000,
    );
    expect((await client.listVMs({})).vms).toEqual([]);

    // One id for the environment in both components' logs (docs/logging.md): the operator's
    // reconciles and the agent's lines about its VM, which the agent learned from the operator's
    // waggle-env-id header.
    const envId = `${namespace}/real`;
    const uid = running?.metadata.uid;
    const phaseLines = operatorLines.filter(
      (l) => l.envId === envId && l.msg === 'environment phase changed',
    );
    expect(phaseLines.map((l) => l.phase)).toEqual(
      expect.arrayContaining(['Booting', 'Running', 'Terminating']),
    );
    for (const l of phaseLines) expect(l.vmId).toBe(uid);
    const agentSaid = agentLines.filter((l) => l.envId === envId);
    expect(agentSaid.map((l) => l.msg)).toEqual(expect.arrayContaining(['vm booting', 'vm destroyed']));
    for (const l of agentSaid) expect(l.vmId).toBe(uid);
    // Every agent line about this VM names its environment.
    expect(agentLines.filter((l) => l.vmId === uid && l.envId !== envId)).toEqual([]);
  });

  it('runs spec.image from a registry on a node whose runtimes lack it, and fails a refused image clearly', {
    timeout: 240_000,
  }, async () => {
    // The agent offers only the python runtime's built-in image: an image needs none.
    const create = (name: string, image: string) => createEnvironment(name, { runtime: 'shell', image });
    // Every write of the ImageReady condition, as a watch from before the create sees them.
    const imageReady: string[] = [];
    const watch = await new Watch(kc).watch(
      `/apis/waggle.dev/v1alpha1/namespaces/${namespace}/waggleenvironments`,
      { fieldSelector: 'metadata.name=oci' },
      (_type, obj: WaggleEnvironment) => {
        const c = obj.status?.conditions?.find((x) => x.type === 'ImageReady');
        const said = c && `${c.status} ${c.reason}: ${c.message}`;
        if (said && imageReady.at(-1) !== said) imageReady.push(said);
      },
      () => undefined,
    );
    await create('oci', `${registry.host}/tenant/busybox:1`);
    const running = await until(
      () => get('oci'),
      (e) => e?.status?.phase === 'Running' || e?.status?.phase === 'Failed',
      'Running',
      180_000,
    );
    expect(running?.status?.phase, JSON.stringify(running?.status?.conditions)).toBe('Running');
    expect(running?.status?.imageDigest).toMatch(/^sha256:[a-f0-9]{64}$/);
    watch.abort();
    // The pull is told as it goes (kubectl get wenv, the gateway's progress), then its result.
    expect(imageReady[0]).toBe(`False PullingImage: ${nodeName}: pulling it unless the node has it`);
    expect(imageReady.slice(1, -1).length, imageReady.join('\n')).toBeGreaterThan(0);
    for (const step of imageReady.slice(1, -1))
      expect(step).toMatch(
        /^False PullingImage: \S+: (reading the manifest|downloading the layers|unpacking the layers|adding the guest toolbox and writing the root filesystem)$/,
      );
    expect(imageReady.at(-1)).toBe(
      `True ImagePulled: ${registry.host}/tenant/busybox:1 is ${running?.status?.imageDigest}, pulled to ${nodeName} in ${imageReady.at(-1)?.match(/in (\d+\.\d) s$/)?.[1]} s`,
    );
    const client = createNodeAgentClient(agent.apiUrl);
    let stdout = '';
    for await (const m of client.exec({
      vmId: running?.metadata.uid as string,
      code: 'echo "$(id -u) $0"',
      language: 'shell',
    })) {
      if (m.event.case === 'result') stdout = m.event.value.stdout;
    }
    expect(stdout).toMatch(/^1000 \/run\/waggle\/exec\/.*\.sh\n$/);

    // Another repository of the same registry is not on the node's allow-list.
    await create('refused', `${registry.host}/other/busybox:1`);
    const failed = await until(
      () => get('refused'),
      (e) => e?.status?.phase === 'Failed',
      'Failed',
      60_000,
    );
    const ready = failed?.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready?.message).toContain(
      `image "${registry.host}/other/busybox:1" is not on this cluster's image allow-list`,
    );
    expect(failed?.status?.conditions?.find((c) => c.type === 'ImageReady')).toMatchObject({
      status: 'False',
      reason: 'ImagePullFailed',
    });

    for (const name of ['oci', 'refused'])
      await custom.deleteNamespacedCustomObject({ ...G, namespace, name });
    await until(
      async () => (await client.listVMs({})).vms.length,
      (n) => n === 0,
      'the VM destroyed',
      60_000,
    );
  });

  it('pre-pulls a template’s image on the node and says so per node; an environment from it then needs no pull', {
    timeout: 240_000,
  }, async () => {
    const image = `${registry.host}/tenant/prepull:1`;
    const name = `prepull-${process.pid}`;
    const missing = `missing-${process.pid}`;
    const template = (n: string) =>
      custom.getClusterCustomObject({ ...TEMPLATES, name: n }).then(
        (o) => o as WaggleTemplate,
        () => undefined,
      );
    for (const [n, img] of [
      [name, image],
      [missing, `${registry.host}/tenant/no-such-image:1`],
    ] as const) {
      await custom.createClusterCustomObject({
        ...TEMPLATES,
        body: {
          apiVersion: 'waggle.dev/v1alpha1',
          kind: 'WaggleTemplate',
          metadata: { name: n },
          spec: { runtime: 'shell', image: img },
        },
      });
    }
    try {
      const ready = await until(
        () => template(name),
        (t) => t?.status?.ready === '1/1',
        'the template Ready on the node',
        180_000,
      );
      const node = ready?.status?.nodes?.find((n) => n.name === nodeName);
      expect(node).toMatchObject({ state: 'Ready', digest: expect.stringMatching(/^sha256:[a-f0-9]{64}$/) });
      expect(node?.message).toMatch(/^pulled sha256:[a-f0-9]{64} in \d+\.\d s$/);
      expect(ready?.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
        status: 'True',
        reason: 'ImagePulled',
      });

      const failed = await until(
        () => template(missing),
        (t) => t?.status?.nodes?.some((n) => n.name === nodeName && n.state === 'Failed') ?? false,
        'the missing image Failed on the node',
        60_000,
      );
      expect(failed?.status?.ready).toBe('0/1');
      const reason = failed?.status?.conditions?.find((c) => c.type === 'Ready');
      expect(reason).toMatchObject({ status: 'False', reason: 'PullFailed' });
      expect(reason?.message).toContain(`${nodeName}: `);
      expect(reason?.message).toContain('no-such-image');

      // The environment finds the image on its node: no pull, ImageReady says so.
      await createEnvironment('from-template', { runtime: 'shell', image, template: name });
      const running = await until(
        () => get('from-template'),
        (e) => e?.status?.phase === 'Running' || e?.status?.phase === 'Failed',
        'Running',
        180_000,
      );
      expect(running?.status?.phase).toBe('Running');
      expect(running?.status?.imageDigest).toBe(node?.digest);
      expect(running?.status?.conditions?.find((c) => c.type === 'ImageReady')?.message).toBe(
        `${image} is ${node?.digest}, already on ${nodeName}`,
      );
    } finally {
      await custom
        .deleteNamespacedCustomObject({ ...G, namespace, name: 'from-template' })
        .catch(() => undefined);
      for (const n of [name, missing])
        await custom.deleteClusterCustomObject({ ...TEMPLATES, name: n }).catch(() => undefined);
    }
    const client = createNodeAgentClient(agent.apiUrl);
    await until(
      async () => (await client.listVMs({})).vms.length,
      (n) => n === 0,
      'the VM destroyed',
      60_000,
    );
  });

  it('pulls a private image with the pull secret of the template it was made from, and only for that image', {
    timeout: 240_000,
  }, async () => {
    const image = `${privateRegistry.host}/team/busybox:1`;
    const template = `private-${process.pid}`;
    const env = createEnvironment;
    const settled = (name: string) =>
      until(
        () => get(name),
        (e) => e?.status?.phase === 'Running' || e?.status?.phase === 'Failed',
        `${name} Running or Failed`,
        180_000,
      );
    const readyMessage = (e: WaggleEnvironment | undefined) =>
      e?.status?.conditions?.find((c) => c.type === 'Ready')?.message ?? '';
    await custom.createClusterCustomObject({
      ...TEMPLATES,
      body: {
        apiVersion: 'waggle.dev/v1alpha1',
        kind: 'WaggleTemplate',
        metadata: { name: template },
        spec: { runtime: 'shell', image, imagePullSecret: { name: 'team-registry' } },
      },
    });
    try {
      // The secret does not exist yet: the environment fails saying what the admin must do.
      await env('no-secret', { runtime: 'shell', image, template });
      const noSecret = await settled('no-secret');
      expect(noSecret?.status?.phase).toBe('Failed');
      expect(readyMessage(noSecret)).toContain(
        `template "${template}": Waggle cannot read its imagePullSecret ${waggleNamespace}/team-registry (not found)`,
      );

      await core.createNamespacedSecret({
        namespace: waggleNamespace,
        body: {
          metadata: { name: 'team-registry' },
          type: 'kubernetes.io/dockerconfigjson',
          data: {
            '.dockerconfigjson': Buffer.from(privateRegistry.dockerConfigJson as string).toString('base64'),
          },
        },
      });
      await env('private', { runtime: 'shell', image, template });
      const running = await settled('private');
      expect(running?.status?.phase, readyMessage(running)).toBe('Running');
      expect(running?.status?.imageDigest).toMatch(/^sha256:/);

      // Without the template, and with the template but another image of that registry, the
      // secret is not used: the registry refuses the anonymous pull.
      await env('anonymous', { runtime: 'shell', image });
      await env('other-image', {
        runtime: 'shell',
        image: `${privateRegistry.host}/team/busybox:2`,
        template,
      });
      for (const name of ['anonymous', 'other-image']) {
        const failed = await settled(name);
        expect(failed?.status?.phase).toBe('Failed');
        expect(readyMessage(failed)).toMatch(
          /the registry refused to serve image ".*" without valid credentials/,
        );
      }
    } finally {
      for (const name of ['no-secret', 'private', 'anonymous', 'other-image'])
        await custom.deleteNamespacedCustomObject({ ...G, namespace, name }).catch(() => undefined);
      await custom.deleteClusterCustomObject({ ...TEMPLATES, name: template }).catch(() => undefined);
    }
    const client = createNodeAgentClient(agent.apiUrl);
    await until(
      async () => (await client.listVMs({})).vms.length,
      (n) => n === 0,
      'the VMs destroyed',
      60_000,
    );
  });

  it('releases an environment whose node is unreachable, then destroys the orphaned VM when the node returns', {
    timeout: 300_000,
  }, async () => {
    await createPythonEnvironment('stranded');
    const running = await until(
      () => get('stranded'),
      (e) => e?.status?.phase === 'Running',
      'Running',
      180_000,
    );
    const vmId = running?.status?.vmId as string;

    // The agent dies (its VM keeps running); the finalizer gives up after destroyTimeout.
    await agent.kill('SIGKILL');
    await custom.deleteNamespacedCustomObject({ ...G, namespace, name: 'stranded' });
    await until(
      () => get('stranded'),
      (e) => e === undefined,
      'the environment to be released',
      60_000,
    );
    // Events are sent off the reconcile's path: the release can be seen a moment before its event.
    const released = await until(
      () =>
        core.listNamespacedEvent({
          namespace,
          fieldSelector: 'involvedObject.name=stranded,reason=VMNotDestroyed',
        }),
      (r) => r.items.length > 0,
      'a VMNotDestroyed event on the environment',
      10_000,
    );
    expect(released.items[0]?.message).toMatch(/releasing the environment.*destroys the orphaned VM/);

    // The agent comes back and re-adopts the VM; the operator finds it has no environment.
    await startAgent();
    const client = createNodeAgentClient(agent.apiUrl);
    await until(
      () => client.listVMs({}),
      (r) => r.vms.length === 0,
      `the orphaned VM ${vmId} to be destroyed`,
      60_000,
    );
    const collected = await until(
      () =>
        core.listNamespacedEvent({
          namespace: 'default',
          fieldSelector: `involvedObject.name=${nodeName},reason=OrphanedVMDestroyed`,
        }),
      (r) => r.items.length > 0,
      'an OrphanedVMDestroyed event on the WaggleNode',
      10_000,
    );
    expect(collected.items[0]?.message).toContain(vmId);
    expect(collected.items[0]?.involvedObject.kind).toBe('WaggleNode');
  });

  it('fails an environment whose QEMU is killed with reason VMExited, the console lines, and frees the node', {
    timeout: 300_000,
  }, async () => {
    await createPythonEnvironment('killed');
    const running = await until(
      () => get('killed'),
      (e) => e?.status?.phase === 'Running',
      'Running',
      180_000,
    );
    const vmId = running?.status?.vmId as string;
    const client = createNodeAgentClient(agent.apiUrl);
    // State directories are named by instance id; the record says which one is this VM's.
    let pid = 0;
    for (const dir of await readdir(join(stateDir, 'vms'))) {
      const record = JSON.parse(
        await readFile(join(stateDir, 'vms', dir, 'vm.json'), 'utf8').catch(() => '{}'),
      ) as { vmId?: string };
      if (record.vmId === vmId)
        pid = Number((await readFile(join(stateDir, 'vms', dir, 'qemu.pid'), 'utf8')).trim());
    }
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    const t0 = Date.now();
    const failed = await until(
      () => get('killed'),
      (e) => e?.status?.phase === 'Failed',
      'Failed',
      30_000,
    );
    process.stderr.write(`real-node-agent: QEMU kill to Failed in ${Date.now() - t0} ms\n`);
    const ready = failed?.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'VMExited' });
    expect(ready?.message).toMatch(/QEMU \(pid \d+\) exited while the VM was running/);
    expect(ready?.message).toMatch(/last console lines/);
    // Calls on it say so, and the failed VM is destroyed (its slot freed).
    await until(
      () => client.listVMs({}),
      (r) => r.vms.length === 0,
      'the exited VM to be destroyed',
      30_000,
    );
    await custom.deleteNamespacedCustomObject({ ...G, namespace, name: 'killed' });
    await until(
      () => get('killed'),
      (e) => e === undefined,
      'the object to disappear',
      60_000,
    );
  });

  it('creates a matching environment from a warm pool VM, and drains the pool when it is deleted', {
    timeout: 300_000,
  }, async () => {
    const pools = { group: 'waggle.dev', version: 'v1alpha1', namespace, plural: 'wagglepools' };
    await custom.createNamespacedCustomObject({
      ...pools,
      body: {
        apiVersion: 'waggle.dev/v1alpha1',
        kind: 'WagglePool',
        metadata: { name: 'py' },
        spec: { replicas: 1, template: { runtime: 'python' } },
      },
    });
    await until(
      () => custom.getNamespacedCustomObject({ ...pools, name: 'py' }) as Promise<WagglePool>,
      (p) => p.status?.readyReplicas === 1,
      'a ready warm VM',
      180_000,
    );
    const t0 = Date.now();
    await createPythonEnvironment('warm');
    const running = await until(
      () => get('warm'),
      (e) => e?.status?.phase === 'Running',
      'Running',
      60_000,
    );
    process.stderr.write(`real-node-agent: warm create to Running in ${Date.now() - t0} ms\n`);
    expect(running?.status).toMatchObject({ createdFrom: 'warm', pool: `${namespace}/py` });
    const client = createNodeAgentClient(agent.apiUrl);
    let stdout = '';
    for await (const m of client.exec({ vmId: running?.metadata.uid as string, code: 'print(6 * 7)' })) {
      if (m.event.case === 'result') stdout = m.event.value.stdout;
    }
    expect(stdout).toBe('42\n');

    await custom.deleteNamespacedCustomObject({ ...G, namespace, name: 'warm' });
    await custom.deleteNamespacedCustomObject({ ...pools, name: 'py' });
    const held = (info: Awaited<ReturnType<typeof client.getNodeInfo>>) =>
      info.pools.filter((p) => p.name === `${namespace}/py`).reduce((a, p) => a + p.ready + p.booting, 0);
    await until(
      () => client.getNodeInfo({}),
      (info) => held(info) === 0 && info.warmVms === 0,
      'the pool drained',
      60_000,
    );
  });

  it('keeps warm VMs of an OCI image (a template’s) and creates an environment of that image from one', {
    timeout: 300_000,
  }, async () => {
    const pools = { group: 'waggle.dev', version: 'v1alpha1', namespace, plural: 'wagglepools' };
    const image = `${registry.host}/tenant/busybox:1`;
    // The node offers no built-in shell runtime: only its image support can hold these.
    const template = {
      runtime: 'shell',
      image,
      resources: { cpus: 1, memoryMiB: 256, diskMiB: 1024 },
      network: { egress: 'none' },
    };
    await custom.createNamespacedCustomObject({
      ...pools,
      body: {
        apiVersion: 'waggle.dev/v1alpha1',
        kind: 'WagglePool',
        metadata: { name: 'bb' },
        spec: { replicas: 1, template },
      },
    });
    try {
      await until(
        () => custom.getNamespacedCustomObject({ ...pools, name: 'bb' }) as Promise<WagglePool>,
        (p) => p.status?.readyReplicas === 1,
        'a ready warm VM of the image',
        180_000,
      );
      await createEnvironment('warm-image', {
        runtime: 'shell',
        image,
        resources: template.resources,
        network: template.network,
      });
      const running = await until(
        () => get('warm-image'),
        (e) => e?.status?.phase === 'Running' || e?.status?.phase === 'Failed',
        'Running',
        60_000,
      );
      expect(running?.status).toMatchObject({
        phase: 'Running',
        createdFrom: 'warm',
        pool: `${namespace}/bb`,
        imageDigest: expect.stringMatching(/^sha256:/),
      });
      const client = createNodeAgentClient(agent.apiUrl);
      let stdout = '';
      for await (const m of client.exec({
        vmId: running?.metadata.uid as string,
        code: 'id -u',
        language: 'shell',
      })) {
        if (m.event.case === 'result') stdout = m.event.value.stdout;
      }
      expect(stdout).toBe('1000\n');
    } finally {
      await custom
        .deleteNamespacedCustomObject({ ...G, namespace, name: 'warm-image' })
        .catch(() => undefined);
      await custom.deleteNamespacedCustomObject({ ...pools, name: 'bb' }).catch(() => undefined);
    }
    const client = createNodeAgentClient(agent.apiUrl);
    await until(
      () => client.getNodeInfo({}),
      (info) => info.warmVms === 0 && info.allocatedVms === 0,
      'the pool drained and the VM destroyed',
      60_000,
    );
  });
});
