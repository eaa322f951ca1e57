// A fake node-agent: a real ConnectRPC server over HTTP/2 with in-memory VMs and files, for fast
// operator and gateway tests. Exported as `@waggle/node-agent/testing`; never used in production.
import { createHash } from 'node:crypto';
import { createServer, type Http2Server, type Http2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { toConnectError } from '../api/connect-errors.ts';
import {
  Code,
  ConnectError,
  ImagePullPhase,
  NodeAgentService,
  type SetWarmPoolsRequest,
  VMOrigin,
  type VMSpec,
  VMState,
  type WarmPool,
} from '../client.ts';
import { GuestFileError, ProcessNotFoundError } from '../errors.ts';

export interface FakeNodeAgent {
  url: string;
  vms: Set<string>;
  createCalls: string[];
  destroyCalls: string[];
  /** Exec requests as received (vmId, language, code). */
  execCalls: Array<{ vmId: string; language: string; code: string }>;
  /** VM ids whose exec was cancelled by the caller. */
  cancelledExecs: string[];
  /** Files by `${vmId}:${path}`. */
  files: Map<string, Uint8Array>;
  /** While true, GetVM and DestroyVM never answer (a black-holed node). */
  stalled: boolean;
  /** Codes the next CreateVM calls fail with, one per call (e.g. Canceled: the agent went away). */
  createFailures: Code[];
  /** VMs suspended by SuspendVM (exec and file calls on them fail with FailedPrecondition). */
  suspended: Set<string>;
  suspendCalls: string[];
  /** CreateVM requests' vm ids and pools ("" when none), in order. */
  createRequests: Array<{ vmId: string; pool: string; image: string; imagePullConfig: string }>;
  /** PullImage requests, in order: the image each named. Each streams four steps `pullStepMs` apart. */
  pullRequests: string[];
  /** SetWarmPools requests, in order (each the node's whole set). */
  warmPoolCalls: SetWarmPoolsRequest['pools'][];
  /** The pools as last declared; each holds `replicas` fake warm VMs, all ready (refilled at once). */
  warmPools: Map<string, WarmPool>;
  /** What the node reports of its pools (WaggleNode status.pools), as a node-agent would. */
  poolStatus(): Array<{
    name: string;
    templateHash: string;
    replicas: number;
    ready: number;
    booting: number;
  }>;
  resumeCalls: string[];
  stop(): Promise<void>;
}

const notFound = (what: string) => new ConnectError(what, Code.NotFound);

/**
 * Exec echoes: stdout is the code it was given, so a test can see which VM ran what. Code that
 * starts with `sleep:<ms>` waits that long first (or until cancelled) — for progress and
 * cancellation tests.
 */
export async function startFakeNodeAgent(
  opts: {
    createDelayMs?: number;
    /** The most VMs it will run; CreateVM beyond that fails with ResourceExhausted, as the agent's does. */
    maxVMs?: number;
    /** Time between the steps PullImage streams (default 150 ms). */
    pullStepMs?: number;
  } = {},
): Promise<FakeNodeAgent> {
  const vms = new Set<string>();
  // VMs added to `vms` directly by a test have no creation time (they look old).
  const createdAt = new Map<string, string>();
  const createCalls: string[] = [];
  const destroyCalls: string[] = [];
  const execCalls: FakeNodeAgent['execCalls'] = [];
  const cancelledExecs: string[] = [];
  const files = new Map<string, Uint8Array>();
  /** Background processes per VM: `sleep:` code runs until killed, other code exits 0 at once. */
  const processes = new Map<
    string,
    Map<string, { stdout: string; running: boolean; exitCode?: number; startedAt: string; language: string }>
  >();
  let processSeq = 0;
  const requireProcess = (vmId: string, processId: string) => {
    const procs = processes.get(vmId) ?? new Map();
    const p = procs.get(processId);
    if (p) return p;
    // The agent's own error edge, so the fake's errors carry the same typed details.
    throw toConnectError(
      new ProcessNotFoundError(`no background process "${processId}" in this VM`, 'not_found', [
        ...procs.keys(),
      ]),
    );
  };
  const suspended = new Set<string>();
  const suspendCalls: string[] = [];
  const createRequests: FakeNodeAgent['createRequests'] = [];
  const pullRequests: string[] = [];
  const warmPoolCalls: FakeNodeAgent['warmPoolCalls'] = [];
  const warmPools = new Map<string, WarmPool>();
  /** A ready warm VM of `pool` whose template is `spec` (warm VMs are never used up here). */
  const warmFor = (pool: string, spec: VMSpec | undefined): boolean => {
    const p = warmPools.get(pool);
    if (!p?.template || !spec || p.replicas === 0) return false;
    return fakeTemplateHash(p.template) === fakeTemplateHash(spec);
  };
  const resumeCalls: string[] = [];
  const vmState = (vmId: string) =>
    suspended.has(vmId) ? VMState.VM_STATE_SUSPENDED : VMState.VM_STATE_RUNNING;
  const requireVM = (vmId: string, opts: { suspendedOk?: boolean } = {}) => {
    if (!vms.has(vmId)) throw notFound(`no VM "${vmId}" on this node`);
    if (suspended.has(vmId) && !opts.suspendedOk)
      throw new ConnectError(`VM ${vmId} is suspended; resume it (ResumeVM) first`, Code.FailedPrecondition);
  };
  const state = { stalled: false };
  const createFailures: Code[] = [];
  /** Resolves at once, or never while stalled (until the caller gives up). */
  const unlessStalled = (signal: AbortSignal) =>
    state.stalled
      ? new Promise<void>((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(new ConnectError('aborted', Code.Canceled))),
        )
      : Promise.resolve();
  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(NodeAgentService, {
        async createVM(req) {
          const id = req.spec?.vmId ?? '';
          createCalls.push(id);
          createRequests.push({
            vmId: id,
            pool: req.pool,
            image: req.spec?.image ?? '',
            imagePullConfig: req.imagePullConfig,
          });
          const warm = warmFor(req.pool, req.spec);
          if (opts.maxVMs !== undefined && !vms.has(id) && vms.size >= opts.maxVMs)
            throw new ConnectError(`all ${opts.maxVMs} VM slots are in use`, Code.ResourceExhausted);
          await new Promise((r) => setTimeout(r, warm ? 1 : (opts.createDelayMs ?? 50)));
          const failure = createFailures.shift();
          if (failure !== undefined) throw new ConnectError('the fake agent went away mid-call', failure);
          vms.add(id);
          createdAt.set(id, new Date().toISOString());
          return {
            vm: {
              spec: req.spec,
              state: VMState.VM_STATE_RUNNING,
              bootMs: warm ? 0 : (opts.createDelayMs ?? 50),
              origin: warm ? VMOrigin.VM_ORIGIN_WARM : VMOrigin.VM_ORIGIN_COLD,
              pool: warm ? req.pool : '',
            },
          };
        },
        async *pullImage(req) {
          pullRequests.push(req.image);
          for (const phase of [
            ImagePullPhase.RESOLVING,
            ImagePullPhase.PULLING,
            ImagePullPhase.UNPACKING,
            ImagePullPhase.BUILDING,
          ]) {
            yield { event: { case: 'phase', value: phase } };
            await new Promise((r) => setTimeout(r, opts.pullStepMs ?? 150));
          }
          const digest = `sha256:${createHash('sha256').update(req.image).digest('hex')}`;
          yield {
            event: {
              case: 'image',
              value: {
                reference: req.image,
                digest,
                unpackedBytes: 1n << 20n,
                rootfsBytes: 2n << 20n,
                cached: false,
              },
            },
          };
        },
        async getVM(req, ctx) {
          await unlessStalled(ctx.signal);
          requireVM(req.vmId, { suspendedOk: true });
          return { vm: { spec: { vmId: req.vmId }, state: vmState(req.vmId) } };
        },
        async setWarmPools(req) {
          warmPoolCalls.push(req.pools);
          warmPools.clear();
          for (const p of req.pools) warmPools.set(p.name, p);
          return { pools: [] };
        },
        async suspendVM(req) {
          suspendCalls.push(req.vmId);
          requireVM(req.vmId, { suspendedOk: true });
          suspended.add(req.vmId);
          return { vm: { spec: { vmId: req.vmId }, state: vmState(req.vmId) }, stateBytes: 1n, suspendMs: 1 };
        },
        async resumeVM(req) {
          resumeCalls.push(req.vmId);
          requireVM(req.vmId, { suspendedOk: true });
          const resumeMs = suspended.delete(req.vmId) ? 1 : 0;
          return { vm: { spec: { vmId: req.vmId }, state: vmState(req.vmId), resumeMs }, resumeMs };
        },
        async destroyVM(req, ctx) {
          await unlessStalled(ctx.signal);
          destroyCalls.push(req.vmId);
          processes.delete(req.vmId);
          suspended.delete(req.vmId);
          return { existed: vms.delete(req.vmId) };
        },
        async listVMs() {
          return {
            vms: [...vms].map((vmId) => ({
              spec: { vmId },
              state: vmState(vmId),
              createdAt: createdAt.get(vmId) ?? '',
            })),
          };
        },
        async *exec(req, ctx) {
          requireVM(req.vmId);
          execCalls.push({ vmId: req.vmId, language: req.language, code: req.code });
          const started = Date.now();
          const sleep = /^sleep:(\d+)/.exec(req.code);
          let cancelled = false;
          if (sleep) {
            cancelled = await new Promise<boolean>((resolve) => {
              const t = setTimeout(() => resolve(false), Number(sleep[1]));
              ctx.signal.addEventListener('abort', () => {
                clearTimeout(t);
                resolve(true);
              });
            });
          }
          if (cancelled) cancelledExecs.push(req.vmId);
          const out = new TextEncoder().encode(req.code);
          yield { event: { case: 'stdout', value: out } };
          yield {
            event: {
              case: 'result',
              value: {
                stdout: req.code,
                stderr: '',
                exitCode: 0,
                cancelled,
                durationMs: Date.now() - started,
                stdoutBytes: BigInt(out.length),
                stderrBytes: 0n,
              },
            },
          };
        },
        async writeFile(req) {
          requireVM(req.vmId);
          files.set(`${req.vmId}:${req.path}`, req.content);
          return { path: req.path, bytesWritten: BigInt(req.content.length) };
        },
        async readFile(req) {
          requireVM(req.vmId);
          const content = files.get(`${req.vmId}:${req.path}`);
          if (!content) {
            throw toConnectError(new GuestFileError('not_found', req.path, `${req.path} does not exist`));
          }
          return { path: req.path, content, size: BigInt(content.length) };
        },
        async listFiles(req) {
          requireVM(req.vmId);
          const prefix = `${req.vmId}:`;
          const entries = [...files.entries()]
            .filter(([k]) => k.startsWith(prefix))
            .map(([k, v]) => {
              const path = k.slice(prefix.length);
              return {
                name: path.split('/').pop() ?? path,
                path,
                type: 'file',
                size: BigInt(v.length),
                mode: '0644',
                modified: new Date().toISOString(),
              };
            });
          return { path: req.path, entries, truncated: false };
        },
        async startProcess(req) {
          requireVM(req.vmId);
          const processId = `proc-${(++processSeq).toString(16).padStart(16, '0')}`;
          const running = req.code.startsWith('sleep:');
          const procs = processes.get(req.vmId) ?? new Map();
          const startedAt = new Date().toISOString();
          procs.set(processId, {
            stdout: running ? '' : req.code,
            running,
            ...(running ? {} : { exitCode: 0 }),
            startedAt,
            language: req.language,
          });
          processes.set(req.vmId, procs);
          return { processId, startedAt };
        },
        async readProcessOutput(req) {
          requireVM(req.vmId);
          const p = requireProcess(req.vmId, req.processId);
          const bytes = Buffer.from(p.stdout);
          if (req.since > BigInt(bytes.length))
            throw new ConnectError(`since ${req.since} is past the end of the output`, Code.InvalidArgument);
          return {
            processId: req.processId,
            stdout: bytes.subarray(Number(req.since)).toString(),
            nextSince: BigInt(bytes.length),
            running: p.running,
            ...(p.exitCode !== undefined ? { exitCode: p.exitCode } : {}),
            killed: !p.running && p.exitCode === undefined,
            stdoutBytes: BigInt(bytes.length),
            startedAt: p.startedAt,
            language: p.language,
          };
        },
        async killProcess(req) {
          requireVM(req.vmId);
          const p = requireProcess(req.vmId, req.processId);
          const wasRunning = p.running;
          p.running = false;
          return { wasRunning, ...(p.exitCode !== undefined ? { exitCode: p.exitCode } : {}) };
        },
        async *installPackages(req) {
          requireVM(req.vmId);
          const stdout = `installed ${req.packages.join(' ')}`;
          yield { stdout: Buffer.from(stdout) };
          yield { manager: 'pip', result: { stdout, stderr: '', exitCode: 0, durationMs: 1 } };
        },
      }),
  });
  const server: Http2Server = createServer(handler);
  const sessions = new Set<Http2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    vms,
    createCalls,
    destroyCalls,
    execCalls,
    cancelledExecs,
    files,
    createFailures,
    suspended,
    suspendCalls,
    createRequests,
    pullRequests,
    warmPoolCalls,
    warmPools,
    poolStatus: () =>
      [...warmPools.values()].map((p) => ({
        name: p.name,
        templateHash: p.template ? fakeTemplateHash(p.template) : '',
        replicas: p.replicas,
        ready: p.replicas,
        booting: 0,
      })),
    resumeCalls,
    get stalled() {
      return state.stalled;
    },
    set stalled(v: boolean) {
      state.stalled = v;
    },
    stop: () =>
      new Promise((r) => {
        server.close(() => r());
        for (const s of sessions) s.destroy(); // clients keep sessions open; close would wait forever
      }),
  };
}

/** The fake's template identity: the VM spec without its id. */
function fakeTemplateHash(t: VMSpec): string {
  const { runtime, cpus, memoryMib, diskMib, egress, allowDomains } = t;
  return createHash('sha256')
    .update(JSON.stringify([runtime, cpus, memoryMib, diskMib, egress, [...allowDomains].sort()]))
    .digest('hex')
    .slice(0, 16);
}
