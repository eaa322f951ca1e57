import { type ChildProcess, spawn } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';

export class ComponentExitedError extends Error {
  override name = 'ComponentExitedError';
  readonly component: string;
  readonly exitCode: number | null;
  readonly logTail: string;
  constructor(
    component: string,
    exitCode: number | null,
    signal: string | null,
    logPath: string,
    logTail: string,
  ) {
    super(
      `${component} exited early (${signal ? `signal ${signal}` : `exit code ${exitCode}`}); ` +
        `last lines of ${logPath}:\n${logTail}`,
    );
    this.component = component;
    this.exitCode = exitCode;
    this.logTail = logTail;
  }
}

/** The last `n` lines of a log file ('' when it does not exist). */
export async function tailLog(path: string, n = 30): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .slice(-n - 1)
    .join('\n')
    .trimEnd();
}

export interface Component {
  name: string;
  pid: number;
  logPath: string;
  /** Resolves when the process has exited (for any reason). */
  exited: Promise<void>;
  isRunning(): boolean;
  /** Rejects with ComponentExitedError if the process exits before `stop()` is called. */
  failure: Promise<never>;
  /** SIGTERM to the whole process group, SIGKILL after `graceMs`; idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kills every component still running when this Node process exits, so crashes leave none behind. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });
}

/**
 * Starts a long-running component in its own process group with stdout and stderr appended to
 * `logPath`.
 */
export async function startComponent(opts: {
  name: string;
  command: string;
  args: string[];
  logPath: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}): Promise<Component> {
  installExitHook();
  const log = await open(opts.logPath, 'a');
  const child = spawn(opts.command, opts.args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true,
    stdio: ['ignore', log.fd, log.fd],
  });
  await log.close();
  live.add(child);

  let running = true;
  let stopping = false;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
    child.once('error', (err) => {
      running = false;
      live.delete(child);
      reject(new Error(`could not start ${opts.name} (${opts.command}): ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      running = false;
      live.delete(child);
      resolve({ code, signal });
    });
  });
  const failure = exited.then(async ({ code, signal }) => {
    if (!stopping)
      throw new ComponentExitedError(opts.name, code, signal, opts.logPath, await tailLog(opts.logPath));
    return new Promise<never>(() => undefined);
  });
  failure.catch(() => undefined); // observed by callers that care; never an unhandled rejection
  const pid = child.pid;
  if (pid === undefined) {
    await exited;
    throw new Error(`could not start ${opts.name}`);
  }

  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // group already gone
    }
  };

  return {
    name: opts.name,
    pid,
    logPath: opts.logPath,
    exited: exited.then(
      () => undefined,
      () => undefined,
    ),
    isRunning: () => running,
    failure,
    async stop(graceMs = 10_000) {
      stopping = true;
      if (running) {
        signalGroup('SIGTERM');
        const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
        await exited.catch(() => undefined);
        clearTimeout(timer);
      }
      // Reap anything the component left in its group.
      signalGroup('SIGKILL');
    },
  };
}
