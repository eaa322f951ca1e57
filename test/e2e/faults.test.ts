// Fault tests on the real local node (docs/reliability.md holds the matrix they check): each
// fault hits the installed stack while an agent works through the MCP Service, and each test
// checks what the caller saw and that no VM or environment was lost or orphaned.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ensureDaemon, stopDaemon } from '../src/cluster/daemons.ts';
import { clusterDaemon } from '../src/cluster/local-cluster.ts';
import { qemuPidsByVmId } from '../src/node-vms.ts';
import { RELEASE_NAMESPACE as NS, RELEASE } from '../src/stack.ts';
import { waitFor } from '../src/wait.ts';
import { type Agent, kubectlFor, newAgent, type Result, text } from './agents.ts';

const kubeconfig = inject('e2eKubeconfig');
const k = kubectlFor(kubeconfig);
const namespace = `e2e-faults-${randomBytes(2).toString('hex')}`;
let agent: Agent;
/** What each fault looked like to the caller, printed at the end (docs/reliability.md). */
const seen: Array<{ fault: string; caller: string }> = [];

type Wenv = {
  metadata: { name: string; uid: string; namespace: string };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string; reason: string }> };
};
const envs = async (all = false): Promise<Wenv[]> =>
  (
    JSON.parse(await k(['get', 'wenv', ...(all ? ['-A'] : ['-n', namespace]), '-o', 'json'])) as {
      items: Wenv[];
    }
  ).items;
const env = async (id: string) => (await envs()).find((e) => e.metadata.name === id);

/** QEMU processes on this node by VM id (their instance records say whose they are). */
const qemuByVm = qemuPidsByVmId;

/**
 * Settles a call: its result, or what it threw (a transport error is what the caller sees); a
 * call with no answer within `withinMs` is a hang, which no fault may cause.
 */
const settle = (p: Promise<Result>, withinMs = 120_000) =>
  Promise.race([
    p.then(
      (r) => (r.isError ? `isError: ${text(r)}` : `ok: ${JSON.stringify(r.structuredContent).slice(0, 160)}`),
      (err: Error) => `error: ${err.message}`,
    ),
    new Promise<string>((r) => setTimeout(() => r(`hang: no answer within ${withinMs / 1000} s`), withinMs)),
  ]);

const untilPhase = (id: string, phase: string, timeoutMs = 240_000) =>
  waitFor(
    () => env(id),
    (e) => e?.status?.phase === phase,
    `${id} to be ${phase}`,
    { timeoutMs, intervalMs: 1_000, describe: (e) => e?.status },
  );

/** A fresh MCP session (after a gateway restart the old session id is unknown). */
async function reconnect(): Promise<void> {
  await agent.close().catch(() => undefined);
  agent = await newAgent(kubeconfig, namespace);
}

/** Waits until a workload's pods are all Ready again, then until the MCP Service answers. */
async function rolledOut(kind: 'deployment' | 'daemonset', name: string): Promise<void> {
  await k(['rollout', 'status', kind, name, '-n', NS, '--timeout=240s']);
}

beforeAll(async () => {
  agent = await newAgent(kubeconfig, namespace);
});

afterAll(async () => {
  process.stderr.write(
    `\nfault matrix (what the caller saw):\n${seen.map((s) => `  ${s.fault}: ${s.caller}`).join('\n')}\n`,
  );
  await agent?.close().catch(() => undefined);
  await k(['delete', 'namespace', namespace, '--wait=true', '--timeout=180s']).catch(() => undefined);
});

describe('faults on the real node: the caller sees a clear result, no VM or environment is lost or orphaned', () => {
  let steady: string;
  let steadyUid: string;
  let steadyPid: number;

  it('gateway pod deleted during an execute: the call ends, a new session finds the environment intact', {
    timeout: 600_000,
  }, async () => {
    steady = (await agent.ok<{ environment_id: string }>('create_environment', { runtime: 'python' }))
      .environment_id;
    steadyUid = (await env(steady))?.metadata.uid as string;
    const pids = (await qemuByVm()).get(steadyUid) ?? [];
    expect(pids).toHaveLength(1);
    steadyPid = pids[0] as number;
    const running = settle(
      agent.call('execute', {
        environment_id: steady,
        code: 'import time\ntime.sleep(10)\nprint("slept")',
        timeout: 60,
      }),
    );
    await new Promise((r) => setTimeout(r, 4_000));
    await k(['delete', 'pod', '-n', NS, '-l', 'app.kubernetes.io/component=gateway', '--wait=false']);
    const caller = await running;
    seen.push({ fault: 'gateway pod deleted during execute', caller });
    // The old pod lets running calls finish (gateway.shutdownGrace, 20 s) before it goes.
    expect(caller).toMatch(/^ok: .*slept/);
    await rolledOut('deployment', `${RELEASE}-gateway`);
    await waitFor(
      async () => {
        try {
          await reconnect();
          return await agent.ok<{ environments: Array<{ environment_id: string; status: string }> }>(
            'list_environments',
            {},
          );
        } catch (err) {
          return { environments: [], error: (err as Error).message };
        }
      },
      (r) => r.environments.some((e) => e.environment_id === steady && e.status === 'running'),
      'the environment listed by a new gateway pod',
      { timeoutMs: 120_000, intervalMs: 2_000 },
    );
    const out = await agent.ok('execute', { environment_id: steady, code: 'print(6 * 7)' });
    expect(out).toMatchObject({ stdout: '42\n', exit_code: 0 });
    expect((await qemuByVm()).get(steadyUid)).toEqual([steadyPid]);
  });

  it('node-agent pod deleted during a create: the create completes with one VM', {
    timeout: 600_000,
  }, async () => {
    const creating = agent.call('create_environment', { runtime: 'python' });
    const booting = await waitFor(
      () => envs(),
      (items) => items.some((e) => e.metadata.name !== steady && e.status?.phase === 'Booting'),
      'the new environment to be Booting',
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    const id = booting.find((e) => e.metadata.name !== steady)?.metadata.name as string;
    const agentPod = async () =>
      (
        await k([
          'get',
          'pod',
          '-n',
          NS,
          '-l',
          'app.kubernetes.io/component=node-agent',
          '-o',
          'jsonpath={range .items[*]}{.metadata.uid} {.status.containerStatuses[0].ready}{"\\n"}{end}',
        ])
      ).trim();
    const before = (await agentPod()).split(' ')[0];
    await k(['delete', 'pod', '-n', NS, '-l', 'app.kubernetes.io/component=node-agent', '--wait=false']);
    const r = await creating;
    seen.push({ fault: 'node-agent pod deleted during create', caller: await settle(Promise.resolve(r)) });
    expect(r.isError, text(r)).toBeFalsy();
    expect(r.structuredContent?.environment_id).toBe(id);
    // A create restored from a snapshot can finish before the pod is gone: wait for the new pod
    // (the DaemonSet's rollout status may still describe the old one).
    await waitFor(
      agentPod,
      (p) => p.split('\n').length === 1 && !p.startsWith(before ?? '') && p.endsWith(' true'),
      'a new node-agent pod, Ready',
      { timeoutMs: 240_000, intervalMs: 500 },
    );
    await rolledOut('daemonset', `${RELEASE}-node-agent`);
    const uid = (await env(id))?.metadata.uid as string;
    expect((await qemuByVm()).get(uid)).toHaveLength(1);
    expect(
      await agent.ok('execute', { environment_id: id, code: 'print("after agent restart")' }),
    ).toMatchObject({
      stdout: 'after agent restart\n',
    });
    // The long-lived environment kept its VM through the agent restart.
    expect((await qemuByVm()).get(steadyUid)).toEqual([steadyPid]);
    await agent.ok('destroy_environment', { environment_id: id });
    await waitFor(qemuByVm, (m) => !m.has(uid), 'its VM gone after destroy', { timeoutMs: 60_000 });
  });

  it('operator leader SIGKILLed during a create: the other replica finishes it, one VM', {
    timeout: 600_000,
  }, async () => {
    const leader = (
      await k(['get', 'lease', '-n', NS, `${RELEASE}-operator`, '-o', 'jsonpath={.spec.holderIdentity}'])
    ).trim();
    expect(leader).toMatch(new RegExp(`^${RELEASE}-operator-`));
    const creating = agent.call('create_environment', { runtime: 'shell' });
    await waitFor(
      () => envs(),
      (items) => items.some((e) => e.metadata.name !== steady),
      'the new environment object',
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    // --force with no grace period: the kubelet SIGKILLs the container at once.
    await k(['delete', 'pod', '-n', NS, leader, '--grace-period=0', '--force', '--wait=false']);
    const r = await creating;
    seen.push({ fault: 'operator leader SIGKILLed during create', caller: await settle(Promise.resolve(r)) });
    expect(r.isError, text(r)).toBeFalsy();
    const id = r.structuredContent?.environment_id as string;
    const uid = (await env(id))?.metadata.uid as string;
    expect((await qemuByVm()).get(uid)).toHaveLength(1);
    const newLeader = await waitFor(
      async () =>
        (
          await k(['get', 'lease', '-n', NS, `${RELEASE}-operator`, '-o', 'jsonpath={.spec.holderIdentity}'])
        ).trim(),
      (h) => h !== '' && h !== leader,
      'another replica to lead',
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );
    expect(newLeader).not.toBe(leader);

    // QEMU SIGKILLed under the same environment: the next call says the VM is gone, the
    // environment becomes Failed (VMExited), and destroying it leaves nothing behind.
    const [pid] = (await qemuByVm()).get(uid) ?? [];
    process.kill(pid as number, 'SIGKILL');
    const failed = await untilPhase(id, 'Failed', 60_000);
    expect(failed?.status?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('VMExited');
    const after = await agent.call('execute', { environment_id: id, code: 'echo still here' });
    seen.push({ fault: 'QEMU SIGKILLed, then execute', caller: await settle(Promise.resolve(after)) });
    expect(after.isError).toBe(true);
    expect(text(after)).toMatch(/Failed|stopped|exited/i);
    await agent.ok('destroy_environment', { environment_id: id });
    await waitFor(
      () => envs(),
      (items) => !items.some((e) => e.metadata.name === id),
      'the failed environment deleted',
      { timeoutMs: 60_000 },
    );
    expect((await qemuByVm()).has(uid)).toBe(false);
  });

  it('apiserver stopped for 90 s: running code keeps its VM, nothing is marked lost, everything works after', {
    timeout: 900_000,
  }, async () => {
    const apiserver = await clusterDaemon('kube-apiserver');
    await stopDaemon(apiserver);
    try {
      await new Promise((r) => setTimeout(r, 20_000));
      // The gateway routes calls on an existing session from its cache, straight to the node.
      const during = await settle(agent.call('execute', { environment_id: steady, code: 'print("during")' }));
      seen.push({ fault: 'apiserver down (20 s in), execute', caller: during });
      // Its token was accepted minutes ago (WAGGLE_AUTH_STALE_ON_ERROR) and the node needs no
      // apiserver to run code: the call works.
      expect(during).toMatch(/^ok: .*during/);
      await new Promise((r) => setTimeout(r, 70_000));
    } finally {
      await ensureDaemon(apiserver);
    }
    await waitFor(
      () => k(['get', '--raw', '/readyz']).catch(() => ''),
      (out) => out.trim() === 'ok',
      'the apiserver ready again',
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );
    // Give the components time to notice (the old code marked the node lost at the operator's
    // first node check, every 5 s, once it could write again).
    await rolledOut('deployment', `${RELEASE}-operator`);
    await rolledOut('deployment', `${RELEASE}-gateway`);
    await new Promise((r) => setTimeout(r, 15_000));
    const e = await env(steady);
    expect(e?.status?.phase).toBe('Running');
    expect(e?.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    const events = await k([
      'get',
      'events',
      '-n',
      namespace,
      '--field-selector',
      `involvedObject.name=${steady}`,
      '-o',
      'jsonpath={.items[*].reason}',
    ]);
    expect(events).not.toMatch(/NodeLost|VMDestroyed/);
    await waitFor(
      async (): Promise<Result> => {
        try {
          await reconnect();
          return await agent.call('execute', { environment_id: steady, code: 'print("after outage")' });
        } catch (err) {
          return { isError: true, content: [{ type: 'text', text: (err as Error).message }] };
        }
      },
      (r) => !r.isError,
      'execute through a fresh session after the outage',
      { timeoutMs: 180_000, intervalMs: 3_000, describe: text },
    );
    seen.push({ fault: 'apiserver back, execute', caller: 'ok' });
    expect((await qemuByVm()).get(steadyUid)).toEqual([steadyPid]);
  });

  it('leaves no orphan: every QEMU on the node belongs to a live environment, each has one', {
    timeout: 300_000,
  }, async () => {
    await agent.ok('destroy_environment', { environment_id: steady });
    await waitFor(qemuByVm, (m) => !m.has(steadyUid), 'the last VM destroyed', { timeoutMs: 60_000 });
    const live = new Set((await envs(true)).map((e) => e.metadata.uid));
    for (const [vm, pids] of await qemuByVm()) {
      expect(live.has(vm), `QEMU ${pids.join(',')} of VM ${vm} has no environment`).toBe(true);
      expect(pids, `VM ${vm}`).toHaveLength(1);
    }
  });
});
