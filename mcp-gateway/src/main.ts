// mcp-gateway entry point: all wiring lives in startGateway; this parses config and handles signals.
import { KubeConfig } from '@kubernetes/client-node';
import { logRenamedVariables } from '@waggle/crds';
import { pino } from 'pino';
import { GATEWAY_RENAMED_VARIABLES, loadGatewayConfig } from './config.ts';
import { startGateway } from './gateway.ts';

async function main(): Promise<void> {
  const config = loadGatewayConfig();
  const log = pino({ name: 'mcp-gateway', level: config.LOG_LEVEL });
  logRenamedVariables(log, process.env, GATEWAY_RENAMED_VARIABLES);
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const gateway = await startGateway({ config, kc, log });
  const shutdown = async (signal: string) => {
    log.info({ signal }, 'mcp-gateway stopping');
    // The drain (WAGGLE_SHUTDOWN_GRACE, then 5 s for interrupted calls to answer) plus closing.
    const bound = config.WAGGLE_SHUTDOWN_GRACE + 10_000;
    await Promise.race([gateway.close(), new Promise((r) => setTimeout(r, bound).unref())]);
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: Error) => {
  process.stderr.write(`mcp-gateway: ${err.message}\n`);
  process.exit(1);
});
