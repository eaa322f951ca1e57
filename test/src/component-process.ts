import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const REPO = join(import.meta.dirname, '..', '..');

export interface ComponentProcess {
  child: ChildProcess;
  /** Sends a signal and waits for the process to exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `node <component>/src/main.ts` as its own process (as it runs in a container) and
 * waits until `readyUrl` answers 2xx. Output goes to the test's stderr; with `onLine`, each line
 * of its stdout (its JSON logs) is given to it as well.
 */
export async function startComponentProcess(opts: {
  component: 'node-agent' | 'operator' | 'mcp-gateway';
  env: NodeJS.ProcessEnv;
  readyUrl: string;
  readyTimeoutMs?: number;
  onLine?: (line: string) => void;
}): Promise<ComponentProcess> {
  const child = spawn(process.execPath, [join(REPO, opts.component, 'src', 'main.ts')], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...opts.env },
    stdio: ['ignore', opts.onLine ? 'pipe' : 'inherit', 'inherit'],
  });
  const onLine = opts.onLine;
  if (onLine && child.stdout) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      process.stderr.write(`${line}\n`);
      onLine(line);
    });
  }
  const handle: ComponentProcess = {
    child,
    async kill(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    },
  };
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`${opts.component} exited with code ${child.exitCode} during start-up`);
    const ok = await fetch(opts.readyUrl).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return handle;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`${opts.component} did not become ready at ${opts.readyUrl} in time`);
}

/** A single operator replica (no leader election) watching every namespace, as in tests. */
export async function startOperatorProcess(opts: {
  kubeconfigPath: string;
  opsPort: number;
  env?: NodeJS.ProcessEnv;
}): Promise<ComponentProcess> {
  return startComponentProcess({
    component: 'operator',
    env: {
      KUBECONFIG: opts.kubeconfigPath,
      WAGGLE_OPERATOR_OPS_LISTEN: `127.0.0.1:${opts.opsPort}`,
      WAGGLE_LEADER_ELECTION: 'false',
      WAGGLE_UNSCHEDULABLE_RETRY: '1s',
      WAGGLE_VERIFY_INTERVAL: '5s',
      WAGGLE_NODE_CHECK_INTERVAL: '1s',
      ...opts.env,
    },
    readyUrl: `http://127.0.0.1:${opts.opsPort}/readyz`,
  });
}
