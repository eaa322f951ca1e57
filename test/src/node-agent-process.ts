import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

const MAIN = join(import.meta.dirname, '..', '..', 'node-agent', 'src', 'main.ts');

export interface AgentProcess {
  apiUrl: string;
  child: ChildProcess;
  /** Sends a signal and waits for the process to exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

/** Starts `node node-agent/src/main.ts` with the given environment and waits for /readyz. */
export async function startAgentProcess(opts: {
  apiPort: number;
  opsPort: number;
  env: NodeJS.ProcessEnv;
  readyTimeoutMs?: number;
}): Promise<AgentProcess> {
  const child = spawn(process.execPath, [MAIN], {
    env: {
      ...process.env,
      WAGGLE_AGENT_LISTEN: `127.0.0.1:${opts.apiPort}`,
      WAGGLE_AGENT_OPS_LISTEN: `127.0.0.1:${opts.opsPort}`,
      LOG_LEVEL: 'warn',
      ...opts.env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`node-agent exited with code ${child.exitCode} during start-up`);
    const ok = await fetch(`http://127.0.0.1:${opts.opsPort}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) {
      return {
        apiUrl: `http://127.0.0.1:${opts.apiPort}`,
        child,
        async kill(signal) {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill(signal);
          await exited;
        },
      };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error('node-agent did not become ready in time');
}
