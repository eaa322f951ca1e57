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
}): Promise<AgentProcess> {
  const p = await startComponentProcess({
    component: 'node-agent',
    env: {
      WAGGLE_AGENT_LISTEN: `127.0.0.1:${opts.apiPort}`,
      WAGGLE_AGENT_OPS_LISTEN: `127.0.0.1:${opts.opsPort}`,
      ...opts.env,
    },
    readyUrl: `http://127.0.0.1:${opts.opsPort}/readyz`,
    ...(opts.readyTimeoutMs ? { readyTimeoutMs: opts.readyTimeoutMs } : {}),
  });
  return { ...p, apiUrl: `http://127.0.0.1:${opts.apiPort}` };
}
