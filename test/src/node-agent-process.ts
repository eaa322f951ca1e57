import { type ComponentProcess, startComponentProcess } from './component-process.ts';

export interface AgentProcess extends ComponentProcess {
  apiUrl: string;
}

/** Starts `node node-agent/src/main.ts` with the given environment and waits for /readyz. */
export async function startAgentProcess(opts: {
  apiPort: number;
  opsPort: number;
  env: NodeJS.ProcessEnv;
  readyTimeoutMs?: number;
  /** Each line the agent logs (see startComponentProcess). */
  onLine?: (line: string) => void;
}): Promise<AgentProcess> {
  const p = await startComponentProcess({
    component: 'node-agent',
    env: {
      WAGGLE_AGENT_LISTEN: `127.0.0.1:${opts.apiPort}`,
      WAGGLE_AGENT_OPS_LISTEN: `127.0.0.1:${opts.opsPort}`,
      // A template snapshot boots one more VM in the background after the first create: only
      // the tests and benchmarks about snapshots turn it on.
      WAGGLE_SNAPSHOTS: 'false',
      ...opts.env,
    },
    readyUrl: `http://127.0.0.1:${opts.opsPort}/readyz`,
    ...(opts.readyTimeoutMs ? { readyTimeoutMs: opts.readyTimeoutMs } : {}),
    ...(opts.onLine ? { onLine: opts.onLine } : {}),
  });
  return { ...p, apiUrl: `http://127.0.0.1:${opts.apiPort}` };
}

/**
 * Test safety net: kills QEMU processes of VMs kept under `stateDir` (VMs outlive their agent by
 * design, so a test that stops its agent without destroying its environments would leave them
 * running). Returns how many were killed; 0 when the test cleaned up properly.
 */
export async function killStrayVMs(stateDir: string): Promise<number> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const run = promisify(execFile);
  const found = await run('pgrep', ['-f', `chroot ${stateDir}/`]).catch(() => ({ stdout: '' }));
  const pids = found.stdout.split('\n').filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return pids.length;
}
