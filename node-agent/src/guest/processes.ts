import type { Logger } from 'pino';
import type { Client } from 'ssh2';
import { InvalidArgumentError, ProcessNotFoundError, ResourceExhaustedError } from '../errors.ts';
import { codeRun, killScript, type Language, runGuestScript } from './exec.ts';
import { OutputRing } from './output-ring.ts';
import { runCommand } from './ssh-connections.ts';

/**
 * Bounds of the background processes of one VM: how many may run at once, how many records
 * (running or finished, each with its output ring) are kept — the oldest finished ones are
 * forgotten first — and the longest a read may wait for output.
 */
export const PROCESS_LIMITS = { maxRunning: 16, maxRecords: 32, maxWaitMs: 30_000 } as const;

/** Ids of forgotten processes remembered per VM, to say so instead of "no such process". */
const FORGOTTEN_IDS = 64;

export interface ProcessOutput {
  processId: string;
  language: Language;
  stdout: string;
  stderr: string;
  nextSince: number;
  droppedBytes: number;
  more: boolean;
  running: boolean;
  /** Set once the process exited on its own. */
  exitCode?: number;
  /** Stopped by kill(), or its connection to the guest was lost (see message). */
  killed: boolean;
  stdoutBytes: number;
  stderrBytes: number;
  startedAt: string;
  endedAt?: string;
  message: string;
}

export interface ProcessSummary {
  processId: string;
  running: boolean;
  exitCode?: number;
  killed: boolean;
}

interface GuestProcess {
  id: string;
  language: Language;
  startedAt: string;
  endedAt?: string;
  ring: OutputRing;
  running: boolean;
  exitCode?: number;
  killed: boolean;
  message: string;
  abort: AbortController;
  /** Settles once the run has ended, however it ended. */
  done: Promise<void>;
  /** Long-polling reads waiting for output or the end. */
  waiters: Set<() => void>;
}

const describe = (p: ProcessSummary) =>
  p.running ? 'running' : p.exitCode !== undefined ? `exited ${p.exitCode}` : 'killed';

/**
 * The background processes of each VM (StartProcess / ReadProcessOutput / KillProcess). A process
 * is an exec script (guest/exec.ts: the code stored in the root-only exec dir, run as the sandbox
 * user in its own SSH session) on its own exec channel of the VM's root connection, with no
 * timeout; its output goes into a bounded ring. It ends by itself, by kill() (the whole session
 * stopped, then killed, by the same kill script a timed-out exec gets), when its channel is lost
 * (then it is marked killed, with a message, and the caller's onLost may stop what is left), or
 * with its VM (forget()). Records live in this process only: an agent restart forgets them.
 */
export class ProcessRegistry {
  readonly #log: Logger;
  readonly #ringBytes: number;
  readonly #limits: { maxRunning: number; maxRecords: number; maxWaitMs: number };
  readonly #reconnect: ((vmId: string) => Promise<Client>) | undefined;
  readonly #byVM = new Map<string, Map<string, GuestProcess>>();
  readonly #forgotten = new Map<string, string[]>();

  constructor(opts: {
    log: Logger;
    /** Output kept per process (stdout and stderr together). */
    ringBytes: number;
    limits?: Partial<{ maxRunning: number; maxRecords: number; maxWaitMs: number }>;
    /**
     * A connection to the VM (a new one once the old has dropped): when a process's channel is
     * lost while it runs, whatever of it is left in the guest is stopped over it.
     */
    reconnect?: (vmId: string) => Promise<Client>;
  }) {
    this.#log = opts.log;
    this.#ringBytes = opts.ringBytes;
    this.#limits = { ...PROCESS_LIMITS, ...opts.limits };
    this.#reconnect = opts.reconnect;
  }

  /** Starts code on its own channel of `client` (the VM's root connection); resolves once it runs. */
  async start(
    vmId: string,
    client: Client,
    req: { code: string; language: Language; interpreter?: string; path?: string },
  ): Promise<{ processId: string; startedAt: string }> {
    const procs = this.#byVM.get(vmId) ?? new Map<string, GuestProcess>();
    const running = [...procs.values()].filter((p) => p.running);
    if (running.length >= this.#limits.maxRunning) {
      throw new ResourceExhaustedError(
        `${running.length} background processes already run in this VM, the most at once; stop one ` +
          `with KillProcess first (running: ${running.map((p) => p.id).join(', ')})`,
      );
    }
    const run = codeRun(client, {
      code: req.code,
      language: req.language,
      ...(req.interpreter ? { interpreter: req.interpreter } : {}),
      ...(req.path ? { path: req.path } : {}),
      prefix: 'proc',
    });
    const abort = new AbortController();
    let settleDone: () => void = () => undefined;
    const rec: GuestProcess = {
      id: run.id,
      language: req.language,
      startedAt: new Date().toISOString(),
      ring: new OutputRing(this.#ringBytes),
      running: true,
      killed: false,
      message: 'running',
      abort,
      done: new Promise<void>((r) => {
        settleDone = r;
      }),
      waiters: new Set(),
    };
    const log = this.#log.child({ vmId, processId: rec.id });
    let started = false;
    const startup = new Promise<void>((resolve, reject) => {
      runGuestScript(client, {
        id: run.id,
        script: run.script,
        stdin: run.stdin,
        timeoutMs: undefined,
        // The ring keeps the output; runGuestScript's own buffers keep nothing (totals only).
        maxOutputBytes: 0,
        onOutput: (stream, chunk) => {
          rec.ring.push(stream, chunk);
          wake(rec);
        },
        signal: abort.signal,
        onStarted: () => {
          started = true;
          resolve();
        },
      }).then(
        (r) => {
          if (r.cancelled) end(rec, { killed: true, message: 'stopped by KillProcess' });
          else if (r.exitCode === null) end(rec, { killed: true, message: 'ended by a signal' });
          else end(rec, { exitCode: r.exitCode, message: `exited with code ${r.exitCode}` });
          settleDone();
        },
        (err: Error) => {
          if (!started) {
            settleDone();
            return reject(err);
          }
          const lost = rec.running;
          end(rec, {
            killed: true,
            message:
              `the connection to the guest was lost while the process ran (${err.message}); it was ` +
              'stopped, and output after that was not kept',
          });
          settleDone();
          if (lost) {
            log.warn({ err: err.message }, 'background process lost its channel');
            this.#stopLost(vmId, rec.id, log);
          }
        },
      );
    });
    procs.set(rec.id, rec);
    this.#byVM.set(vmId, procs);
    this.#evict(vmId, procs);
    try {
      await startup;
    } catch (err) {
      procs.delete(rec.id);
      if (procs.size === 0 && this.#byVM.get(vmId) === procs) this.#byVM.delete(vmId);
      throw err;
    }
    log.info({ language: req.language }, 'background process started');
    return { processId: rec.id, startedAt: rec.startedAt };
  }

  /** Best effort: the kill script over a fresh connection, unless the VM is being forgotten. */
  #stopLost(vmId: string, processId: string, log: Logger): void {
    if (!this.#reconnect || !this.#byVM.has(vmId)) return;
    void this.#reconnect(vmId)
      .then((c) => runCommand(c, killScript(processId), undefined, { timeoutMs: 10_000 }))
      .catch((err: Error) => log.info({ err: err.message }, 'could not stop a lost background process'));
  }

  /** Forgets the oldest finished processes of a VM beyond the record limit. */
  #evict(vmId: string, procs: Map<string, GuestProcess>): void {
    if (procs.size <= this.#limits.maxRecords) return;
    const finished = [...procs.values()]
      .filter((p) => !p.running)
      .sort((a, b) => (a.endedAt ?? '').localeCompare(b.endedAt ?? ''));
    const forgotten = this.#forgotten.get(vmId) ?? [];
    for (const p of finished) {
      if (procs.size <= this.#limits.maxRecords) break;
      procs.delete(p.id);
      forgotten.push(p.id);
    }
    this.#forgotten.set(vmId, forgotten.slice(-FORGOTTEN_IDS));
  }

  #get(vmId: string, processId: string): GuestProcess {
    const rec = this.#byVM.get(vmId)?.get(processId);
    if (rec) return rec;
    if (this.#forgotten.get(vmId)?.includes(processId)) {
      throw new ProcessNotFoundError(
        `background process "${processId}" has ended and was forgotten: at most ` +
          `${this.#limits.maxRecords} processes are kept per VM, the oldest finished ones go first`,
        'forgotten',
        this.list(vmId).map((p) => p.processId),
      );
    }
    const known = this.list(vmId);
    throw new ProcessNotFoundError(
      `no background process "${processId}" in this VM; ` +
        (known.length
          ? `its processes: ${known.map((p) => `${p.processId} (${describe(p)})`).join(', ')}`
          : 'none has been started in it since this agent started'),
      'not_found',
      known.map((p) => p.processId),
    );
  }

  /**
   * Output after `since` (at most `maxBytes`) and the state. With nothing new and the process
   * running, waits up to `waitMs` (capped at maxWaitMs) for output or the end, or until `signal`.
   */
  async read(
    vmId: string,
    processId: string,
    opts: { since: number; maxBytes: number; waitMs?: number; signal?: AbortSignal },
  ): Promise<ProcessOutput> {
    const rec = this.#get(vmId, processId);
    const since = opts.since;
    if (!Number.isSafeInteger(since) || since < 0) {
      throw new InvalidArgumentError(`since must be a whole number of bytes ≥ 0, got ${since}`);
    }
    if (since > rec.ring.end) {
      throw new InvalidArgumentError(
        `since ${since} is past the end of the output (${rec.ring.end} bytes so far); pass the ` +
          'next_since of the previous read, or 0 for all output still kept',
      );
    }
    const waitMs = Math.min(Math.max(0, opts.waitMs ?? 0), this.#limits.maxWaitMs);
    if (since === rec.ring.end && rec.running && waitMs > 0) await this.#wait(rec, waitMs, opts.signal);
    const r = rec.ring.read(since, Math.max(1, opts.maxBytes));
    return {
      processId: rec.id,
      language: rec.language,
      stdout: r.stdout.toString('utf8'),
      stderr: r.stderr.toString('utf8'),
      nextSince: r.nextSince,
      droppedBytes: r.dropped,
      more: r.more,
      running: rec.running,
      ...(rec.exitCode !== undefined ? { exitCode: rec.exitCode } : {}),
      killed: rec.killed,
      stdoutBytes: rec.ring.totals.stdout,
      stderrBytes: rec.ring.totals.stderr,
      startedAt: rec.startedAt,
      ...(rec.endedAt ? { endedAt: rec.endedAt } : {}),
      message: rec.message,
    };
  }

  #wait(rec: GuestProcess, ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        rec.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      rec.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Stops a process and everything it started (its whole SSH session in the guest). Idempotent:
   * for one that has ended already, wasRunning is false and exitCode says how it ended.
   */
  async kill(vmId: string, processId: string): Promise<{ wasRunning: boolean; exitCode?: number }> {
    const rec = this.#get(vmId, processId);
    if (!rec.running)
      return { wasRunning: false, ...(rec.exitCode !== undefined ? { exitCode: rec.exitCode } : {}) };
    rec.abort.abort();
    // runGuestScript closes the channel itself if the kill script has not ended it in time.
    await rec.done;
    return { wasRunning: true, ...(rec.exitCode !== undefined ? { exitCode: rec.exitCode } : {}) };
  }

  /** The VM's processes, oldest first. */
  list(vmId: string): ProcessSummary[] {
    return [...(this.#byVM.get(vmId)?.values() ?? [])].map((p) => ({
      processId: p.id,
      running: p.running,
      ...(p.exitCode !== undefined ? { exitCode: p.exitCode } : {}),
      killed: p.killed,
    }));
  }

  /**
   * Drops every record of a VM that is going away (its processes die with it: the caller closes
   * the connection and stops the VM). Waiting reads return at once with the process ended.
   */
  forget(vmId: string): void {
    for (const rec of this.#byVM.get(vmId)?.values() ?? []) {
      end(rec, { killed: true, message: 'its VM was destroyed' });
    }
    this.#byVM.delete(vmId);
    this.#forgotten.delete(vmId);
  }

  /**
   * Ends the records of a VM's running processes with `message` and keeps them (the VM stays,
   * its connections are about to close: a suspend). Nothing is killed from here.
   */
  endAll(vmId: string, message: string): void {
    for (const rec of this.#byVM.get(vmId)?.values() ?? []) end(rec, { killed: true, message });
  }

  closeAll(): void {
    for (const vmId of [...this.#byVM.keys()]) this.forget(vmId);
  }
}

function wake(rec: GuestProcess): void {
  for (const w of [...rec.waiters]) w();
}

/** Marks a process ended (the first way it ended wins) and wakes its readers. */
function end(rec: GuestProcess, how: { exitCode?: number; killed?: boolean; message: string }): void {
  if (!rec.running) return;
  rec.running = false;
  rec.endedAt = new Date().toISOString();
  if (how.exitCode !== undefined) rec.exitCode = how.exitCode;
  rec.killed = how.killed ?? false;
  rec.message = how.message;
  wake(rec);
}
