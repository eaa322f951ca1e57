import type { Duplex } from 'node:stream';
import { parseDuration, type WaggleEnvironment } from '@waggle/crds';
import {
  createNodeAgentClient,
  type ExecResult,
  formatEnvId,
  type NodeAgentClient,
  withEnvId,
} from '@waggle/node-agent/client';
import { EnvironmentNotRunningError, InvalidRequestError } from '../errors.ts';
import type { ActivityRecorder } from './activity.ts';
import type { EnvironmentCache } from './environment-cache.ts';
import { agentCallError } from './node-agent-errors.ts';
import { openTunnel } from './port-tunnel.ts';

/**
 * Deadline of one file call on a node-agent (the largest legal write over SFTP to a TCG guest
 * takes seconds; a black-holed node must not hold the caller, or a gateway slot, for ever).
 */
const FILE_CALL_TIMEOUT_MS = 120_000;

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

/** A background process's output after a cursor, and its state (ReadProcessOutput). */
export interface ProcessOutcome {
  processId: string;
  language: string;
  stdout: string;
  stderr: string;
  nextSince: number;
  droppedBytes: number;
  more: boolean;
  running: boolean;
  /** Set once it exited on its own. */
  exitCode: number | undefined;
  killed: boolean;
  stdoutBytes: number;
  stderrBytes: number;
  startedAt: string;
  endedAt: string | undefined;
  message: string;
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
  /** With mutual TLS, the client accepts only the serving certificate of `nodeName`. */
  readonly #clientFactory: (endpoint: string, nodeName: string) => NodeAgentClient;

  constructor(
    cache: EnvironmentCache,
    activity: ActivityRecorder,
    clientFactory: (endpoint: string, nodeName: string) => NodeAgentClient = (endpoint) =>
      createNodeAgentClient(endpoint),
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
    const key = `${nodeName} ${endpoint}`;
    let agent = this.#clients.get(key);
    if (!agent) {
      agent = this.#clientFactory(endpoint, nodeName);
      this.#clients.set(key, agent);
    }
    this.touch(env);
    // Every call tells the node-agent which environment it is about, for its logs.
    const envId = formatEnvId(env.metadata.namespace as string, id);
    return { agent: withEnvId(agent, envId), vmId: env.status?.vmId as string, id };
  }

  /** Maps a node-agent error (see node-agent-errors.ts); unknown ones are rethrown as internal faults. */
  #translate(id: string, err: unknown, path?: string, processId?: string): never {
    throw agentCallError(err, {
      envId: id,
      ...(path !== undefined ? { path } : {}),
      ...(processId !== undefined ? { processId } : {}),
    });
  }

  async exec(
    env: WaggleEnvironment,
    req: { code: string; language?: string; timeoutMs: number; maxOutputBytes: number },
    opts: { signal?: AbortSignal; onOutput?: (stream: 'stdout' | 'stderr', chunk: Uint8Array) => void } = {},
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
        else if (msg.event.case) opts.onOutput?.(msg.event.case, msg.event.value);
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
      // The caller cancelled (or went away): the agent has stopped the installer.
      if (opts.signal?.aborted) return { manager: '', result: { ...toOutcome(undefined), cancelled: true } };
      return this.#translate(t.id, err);
    }
  }

  /** Records use of the environment (for idle expiry), as every call through here does. */
  touch(env: WaggleEnvironment): void {
    this.#activity.touch(env.metadata.namespace as string, env.metadata.name as string, idleTimeoutMs(env));
  }

  /**
   * A TCP connection to a port in the environment, through its node-agent (which reaches the
   * guest over SSH). Rejects with PortNotListeningError when nothing accepts on that port.
   */
  async openPort(env: WaggleEnvironment, port: number, signal?: AbortSignal): Promise<Duplex> {
    const t = this.#target(env);
    try {
      return await openTunnel(
        (requests, tunnelSignal) => t.agent.forwardPort(requests, { signal: tunnelSignal }),
        { vmId: t.vmId, port },
        signal,
      );
    } catch (err) {
      return this.#translate(t.id, err);
    }
  }

  async writeFile(env: WaggleEnvironment, path: string, content: Uint8Array): Promise<number> {
    const t = this.#target(env);
    try {
      const r = await t.agent.writeFile({ vmId: t.vmId, path, content }, { timeoutMs: FILE_CALL_TIMEOUT_MS });
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
      const r = await t.agent.readFile(
        { vmId: t.vmId, path, maxBytes: BigInt(maxBytes) },
        { timeoutMs: FILE_CALL_TIMEOUT_MS },
      );
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
      const r = await t.agent.listFiles({ vmId: t.vmId, path }, { timeoutMs: FILE_CALL_TIMEOUT_MS });
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

  /** Starts code in the background; returns its id at once (StartProcess). */
  async startProcess(
    env: WaggleEnvironment,
    req: { code: string; language?: string },
  ): Promise<{ processId: string; startedAt: string }> {
    const t = this.#target(env);
    try {
      const r = await t.agent.startProcess(
        { vmId: t.vmId, code: req.code, language: req.language ?? '' },
        { timeoutMs: 60_000 },
      );
      return { processId: r.processId, startedAt: r.startedAt };
    } catch (err) {
      throw agentCallError(err, { envId: t.id, startingProcess: true });
    }
  }

  /**
   * A background process's output after `since` and its state; with `waitMs`, the agent waits
   * that long for something new while the process runs.
   */
  async readProcessOutput(
    env: WaggleEnvironment,
    req: { processId: string; since: number; waitMs: number; maxBytes: number },
    opts: { signal?: AbortSignal } = {},
  ): Promise<ProcessOutcome> {
    const t = this.#target(env);
    try {
      const r = await t.agent.readProcessOutput(
        {
          vmId: t.vmId,
          processId: req.processId,
          since: BigInt(req.since),
          waitMs: req.waitMs,
          maxBytes: req.maxBytes,
        },
        { ...(opts.signal ? { signal: opts.signal } : {}), timeoutMs: req.waitMs + 30_000 },
      );
      return {
        processId: r.processId,
        language: r.language,
        stdout: r.stdout,
        stderr: r.stderr,
        nextSince: Number(r.nextSince),
        droppedBytes: Number(r.droppedBytes),
        more: r.more,
        running: r.running,
        exitCode: r.exitCode,
        killed: r.killed,
        stdoutBytes: Number(r.stdoutBytes),
        stderrBytes: Number(r.stderrBytes),
        startedAt: r.startedAt,
        endedAt: r.endedAt || undefined,
        message: r.message,
      };
    } catch (err) {
      if (opts.signal?.aborted) throw new InvalidRequestError('process_output was cancelled');
      return this.#translate(t.id, err, undefined, req.processId);
    }
  }

  /** Stops a background process and all it started; for one that has ended, wasRunning is false. */
  async killProcess(
    env: WaggleEnvironment,
    processId: string,
  ): Promise<{ wasRunning: boolean; exitCode: number | undefined }> {
    const t = this.#target(env);
    try {
      const r = await t.agent.killProcess({ vmId: t.vmId, processId }, { timeoutMs: 60_000 });
      return { wasRunning: r.wasRunning, exitCode: r.exitCode };
    } catch (err) {
      return this.#translate(t.id, err, undefined, processId);
    }
  }
}
