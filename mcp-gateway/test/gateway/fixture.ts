// The shared setup of the gateway's fake-node tests (one file per behaviour beside this one):
// the real apiserver and operator, a fake node-agent on one WaggleNode, a gateway in this process
// allowing three environments per caller, two namespaces and three API-key callers (A and C in
// namespace A, B in namespace B), and connected clients for A and B. Each test file that calls
// useGatewayStack() gets its own stack and namespaces (a few seconds; no VMs).
import { randomBytes } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { WaggleEnvironment } from '@waggle/crds';
import type { FakeNodeAgent } from '@waggle/node-agent/testing';
import { connectClient, ENVIRONMENTS, kubeClients, waitFor } from '@waggle/test';
import { afterAll, beforeAll, inject } from 'vitest';
import type { RunningGateway } from '../../src/gateway.ts';
import { type FakeStack, startFakeStack } from '../fake-stack.ts';

export const kubeconfigPath = inject('kubeconfigPath');
export const { kc, core, custom, rbac } = kubeClients(kubeconfigPath);
export const suffix = randomBytes(3).toString('hex');
export const nsA = `gw-a-${suffix}`;
export const nsB = `gw-b-${suffix}`;
/** The gateway's per-caller environment limit (WAGGLE_MAX_ENVIRONMENTS). */
export const MAX_ENVIRONMENTS = 3;

export interface GatewayStack {
  agent: FakeNodeAgent;
  gateway: RunningGateway;
  /** Connected as agent-a (namespace A) and agent-b (namespace B). */
  a: Client;
  b: Client;
  /** API keys: agent-a and agent-c in namespace A, agent-b in namespace B. */
  keyA: string;
  keyB: string;
  keyC: string;
}

/**
 * Starts the stack before this file's tests and stops it after them; the returned object is
 * filled in once the stack runs (read it inside tests and hooks, not at module level).
 */
export function useGatewayStack(): GatewayStack {
  const live = {} as GatewayStack;
  let stack: FakeStack | undefined;
  beforeAll(async () => {
    stack = await startFakeStack({
      kc,
      kubeconfigPath,
      name: 'gw',
      namespaces: [nsA, nsB],
      callers: [
        { name: 'agent-a', namespace: nsA },
        { name: 'agent-b', namespace: nsB },
        { name: 'agent-c', namespace: nsA },
      ],
      node: { vms: 30, runtimes: ['python', 'node'], ociImages: true },
      agent: { createDelayMs: 100 },
      gatewayEnv: {
        WAGGLE_MAX_ENVIRONMENTS: String(MAX_ENVIRONMENTS),
        WAGGLE_UNSCHEDULABLE_GRACE: '1s',
        WAGGLE_ACTIVITY_INTERVAL: '1s',
      },
    });
    const key = (name: string) => stack?.keys[name] as string;
    Object.assign(live, {
      agent: stack.agent,
      gateway: stack.gateway as RunningGateway,
      keyA: key('agent-a'),
      keyB: key('agent-b'),
      keyC: key('agent-c'),
    });
    live.a = await connectClient(live.gateway.url, live.keyA, 'agent-a');
    live.b = await connectClient(live.gateway.url, live.keyB, 'agent-b');
  }, 120_000);
  afterAll(async () => {
    await live.a?.close();
    await live.b?.close();
    await stack?.close();
  });
  return live;
}

export const envObject = (ns: string, name: string) =>
  custom.getNamespacedCustomObject({ ...ENVIRONMENTS, namespace: ns, name }) as Promise<WaggleEnvironment>;

/** Waits until the environment object is gone (its finalizer has run). */
export const untilGone = (ns: string, name: string, timeoutMs = 30_000) =>
  waitFor(
    () =>
      envObject(ns, name).then(
        () => true,
        () => false,
      ),
    (exists) => !exists,
    `environment ${name} to be gone`,
    { timeoutMs },
  );
