import { createServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { Code, ConnectError, NodeAgentService, VMState } from '@waggle/node-agent/client';

/** A real ConnectRPC server with in-memory VMs, for fast operator tests. */
export interface FakeNodeAgent {
  url: string;
  vms: Set<string>;
  createCalls: string[];
  destroyCalls: string[];
  stop(): Promise<void>;
}

export async function startFakeNodeAgent(opts: { createDelayMs?: number } = {}): Promise<FakeNodeAgent> {
  const vms = new Set<string>();
  const createCalls: string[] = [];
  const destroyCalls: string[] = [];
  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(NodeAgentService, {
        async createVM(req) {
          const id = req.spec?.vmId ?? '';
          createCalls.push(id);
          await new Promise((r) => setTimeout(r, opts.createDelayMs ?? 50));
          vms.add(id);
          return {
            vm: { spec: req.spec, state: VMState.VM_STATE_RUNNING, bootMs: opts.createDelayMs ?? 50 },
          };
        },
        async getVM(req) {
          if (!vms.has(req.vmId)) throw new ConnectError(`no VM "${req.vmId}" on this node`, Code.NotFound);
          return { vm: { spec: { vmId: req.vmId }, state: VMState.VM_STATE_RUNNING } };
        },
        async destroyVM(req) {
          destroyCalls.push(req.vmId);
          return { existed: vms.delete(req.vmId) };
        },
        async listVMs() {
          return { vms: [...vms].map((vmId) => ({ spec: { vmId }, state: VMState.VM_STATE_RUNNING })) };
        },
      }),
  });
  const server: Http2Server = createServer(handler);
  const sessions = new Set<import('node:http2').Http2Session>();
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
    stop: () =>
      new Promise((r) => {
        server.close(() => r());
        for (const s of sessions) s.destroy(); // clients keep sessions open; close would wait forever
      }),
  };
}
