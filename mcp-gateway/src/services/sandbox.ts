import { parseDuration, type WaggleEnvironment } from '@waggle/crds';
import {
  Code,
  ConnectError,
  createNodeAgentClient,
  type ExecResult,
  type NodeAgentClient,
} from '@waggle/node-agent/client';
import { EnvironmentNotRunningError, FileError, InvalidRequestError } from '../errors.ts';
import type { ActivityRecorder } from './activity.ts';
import type { EnvironmentCache } from './environment-cache.ts';

export interface ExecOutcome {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
  timedOut: boolean;
  cancelled: boolean;
  durationMs: number;
  stdoutBytes: number;
  stderrBytes: number;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

export interface FileEntryOut {
  name: string;
  path: string;
  type: string;
  size: number;
  mode: string;
  modified: string;
}

const toOutcome = (r: ExecResult | undefined): ExecOutcome => ({
  stdout: r?.stdout ?? '',
  stderr: r?.stderr ?? '',
  exitCode: r?.exitCode,
  timedOut: r?.timedOut ?? false,
  cancelled: r?.cancelled ?? false,
  durationMs: r?.durationMs ?? 0,
  stdoutBytes: Number(r?.stdoutBytes ?? 0),
  stderrBytes: Number(r?.stderrBytes ?? 0),
  stdoutTruncated: r?.stdoutTruncated ?? false,
  stderrTruncated: r?.stderrTruncated ?? false,
});

/** The environment's idle timeout in ms, or undefined when it is not a valid duration. */
function idleTimeoutMs(env: WaggleEnvironment): number | undefined {
  try {
    return env.spec.idleTimeout ? parseDuration(env.spec.idleTimeout) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The data path: calls the node-agent that runs the environment's VM directly (never through the
 * apiserver), records activity, and turns the agent's errors into errors the caller can act on.
 */
export class SandboxService {
  readonly #cache: EnvironmentCache;
  readonly #activity: ActivityRecorder;
  readonly #clients = new Map<string, NodeAgentClient>();
  readonly #clientFactory: (endpoint: string) => NodeAgentClient;

  constructor(
    cache: EnvironmentCache,
    activity: ActivityRecorder,
    clientFactory: (endpoint: string) => NodeAgentClient = createNodeAgentClient,
  ) {
    this.#cache = cache;
    this.#activity = activity;
    this.#clientFactory = clientFactory;
  }

  #target(env: WaggleEnvironment): { agent: NodeAgentClient; vmId: string; id: string } {
    const id = env.metadata.name as string;
    const nodeName = env.status?.nodeName as string;
    const endpoint = this.#cache.node(nodeName)?.status?.endpoint;
    if (!endpoint)
      throw new EnvironmentNotRunningError(id, 'unreachable', `node ${nodeName} is not registered`);
    let agent = this.#clients.get(endpoint);
    if (!agent) {
      agent = this.#clientFactory(endpoint);
      this.#clients.set(endpoint, agent);
    }
    this.#activity.touch(env.metadata.namespace as string, id, idleTimeoutMs(env));
    return { agent, vmId: env.status?.vmId as string, id };
  }

  /** Maps a node-agent error; unknown ones are rethrown as internal faults. */
  #translate(id: string, err: unknown, path?: string): never {
    const e = ConnectError.from(err);
    const fileCode = e.metadata.get('waggle-file-error');
    if (fileCode) {
      const hint =
        fileCode === 'not_found'
          ? ' Use list_files to see what exists.'
          : fileCode === 'too_large'
            ? ' Read or write a smaller file, or split it.'
            : '';
      throw new FileError(`file_${fileCode}`, `${e.rawMessage}.${hint}`);
    }
    if (e.code === Code.NotFound)
      throw new EnvironmentNotRunningError(id, 'Failed', 'its VM is gone from the node');
    if (e.metadata.get('waggle-vm-state') === 'exited')
      throw new EnvironmentNotRunningError(id, 'Failed', firstLine(e.rawMessage));
    if (e.code === Code.InvalidArgument) throw new InvalidRequestError(e.rawMessage);
    if (e.code === Code.Unavailable)
      throw new EnvironmentNotRunningError(
        id,
        'unreachable',
        `the node did not answer${path ? ` while accessing ${path}` : ''}: ${e.rawMessage}`,
      );
    throw e;
  }

  async exec(
    env: WaggleEnvironment,
    req: { code: string; language?: string; timeoutMs: number; maxOutputBytes: number },
    opts: { signal?: AbortSignal; onOutput?: (stream: 'stdout' | 'stderr', bytes: number) => void } = {},
  ): Promise<ExecOutcome> {
    const t = this.#target(env);
    try {
      let result: ExecResult | undefined;
      const stream = t.agent.exec(
        {
          vmId: t.vmId,
          code: req.code,
          language: req.language ?? '',
          timeoutMs: req.timeoutMs,
          maxOutputBytes: req.maxOutputBytes,
        },
        { ...(opts.signal ? { signal: opts.signal } : {}), timeoutMs: req.timeoutMs + 30_000 },
      );
      for await (const msg of stream) {
        if (msg.event.case === 'result') result = msg.event.value;
        else if (msg.event.case) opts.onOutput?.(msg.event.case, msg.event.value.length);
      }
      return toOutcome(result);
    } catch (err) {
      if (opts.signal?.aborted) {
        return { ...toOutcome(undefined), cancelled: true };
      }
      return this.#translate(t.id, err);
    }
  }

  async installPackages(
    env: WaggleEnvironment,
    req: { packages: string[]; timeoutMs: number },
    opts: { signal?: AbortSignal; onOutput?: (stream: 'stdout' | 'stderr', chunk: Uint8Array) => void } = {},
  ): Promise<{ manager: string; result: ExecOutcome }> {
    const t = this.#target(env);
    try {
      let last: { manager: string; result: ExecResult | undefined } | undefined;
      const stream = t.agent.installPackages(
        { vmId: t.vmId, packages: req.packages, manager: '', timeoutMs: req.timeoutMs },
        { ...(opts.signal ? { signal: opts.signal } : {}), timeoutMs: req.timeoutMs + 30_000 },
      );
      for await (const msg of stream) {
        if (msg.result) last = { manager: msg.manager, result: msg.result };
        else if (msg.stdout.length) opts.onOutput?.('stdout', msg.stdout);
        else if (msg.stderr.length) opts.onOutput?.('stderr', msg.stderr);
      }
      return { manager: last?.manager ?? '', result: toOutcome(last?.result) };
    } catch (err) {
      return this.#translate(t.id, err);
    }
  }

  async writeFile(env: WaggleEnvironment, path: string, content: Uint8Array): Promise<number> {
    const t = this.#target(env);
    try {
      const r = await t.agent.writeFile({ vmId: t.vmId, path, content });
      return Number(r.bytesWritten);
    } catch (err) {
      return this.#translate(t.id, err, path);
    }
  }

  async readFile(
    env: WaggleEnvironment,
    path: string,
    maxBytes: number,
  ): Promise<{ content: Uint8Array; size: number }> {
    const t = this.#target(env);
    try {
      const r = await t.agent.readFile({ vmId: t.vmId, path, maxBytes: BigInt(maxBytes) });
      return { content: r.content, size: Number(r.size) };
    } catch (err) {
      return this.#translate(t.id, err, path);
    }
  }

  async listFiles(
    env: WaggleEnvironment,
    path: string,
  ): Promise<{ path: string; entries: FileEntryOut[]; truncated: boolean }> {
    const t = this.#target(env);
    try {
      const r = await t.agent.listFiles({ vmId: t.vmId, path });
      return {
        path: r.path,
        truncated: r.truncated,
        entries: r.entries.map((e) => ({
          name: e.name,
          path: e.path,
          type: e.type,
          size: Number(e.size),
          mode: e.mode,
          modified: e.modified,
        })),
      };
    } catch (err) {
      return this.#translate(t.id, err, path);
    }
  }
}

/** The first line of a node-agent message (the rest is console output for the operator). */
const firstLine = (m: string) => m.split('\n')[0] ?? m;
