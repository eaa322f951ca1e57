import { create } from '@bufbuild/protobuf';
import type { ConnectRouter } from '@connectrpc/connect';
import type { Agent } from '../agent.ts';
import {
  CreateVMResponseSchema,
  DestroyVMResponseSchema,
  type ExecResponse,
  ExecResponseSchema,
  FileEntrySchema,
  GetNodeInfoResponseSchema,
  GetVMResponseSchema,
  InstallPackagesResponseSchema,
  ListFilesResponseSchema,
  ListVMsResponseSchema,
  NodeAgentService,
  ReadFileResponseSchema,
  WriteFileResponseSchema,
} from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import { edge, toConnectError } from './connect-errors.ts';
import { resultToPb, specFromPb, vmToPb } from './convert.ts';

/** Registers the NodeAgentService handlers: protocol translation only, the work is in Agent. */
export function nodeAgentRoutes(agent: Agent) {
  return (router: ConnectRouter) =>
    router.service(NodeAgentService, {
      createVM: edge(async (req) =>
        create(CreateVMResponseSchema, { vm: vmToPb(await agent.createVM(specFromPb(req.spec))) }),
      ),
      getVM: edge(async (req) => create(GetVMResponseSchema, { vm: vmToPb(agent.vms.get(req.vmId)) })),
      listVMs: edge(async () => create(ListVMsResponseSchema, { vms: agent.vms.list().map(vmToPb) })),
      destroyVM: edge(async (req) =>
        create(DestroyVMResponseSchema, { existed: await agent.destroyVM(req.vmId) }),
      ),

      async *exec(req, ctx): AsyncGenerator<ExecResponse> {
        // Output chunks are queued as they arrive and yielded in order, then the final result.
        const queue: ExecResponse[] = [];
        let wake: (() => void) | undefined;
        let done = false;
        let failure: unknown;
        let final: ExecResponse | undefined;
        agent
          .exec({
            vmId: req.vmId,
            code: req.code,
            language: req.language,
            timeoutMs: req.timeoutMs,
            maxOutputBytes: req.maxOutputBytes,
            signal: ctx.signal,
            onOutput: (stream, chunk) => {
              queue.push(
                create(ExecResponseSchema, { event: { case: stream, value: new Uint8Array(chunk) } }),
              );
              wake?.();
            },
          })
          .then(
            (r) => {
              final = create(ExecResponseSchema, { event: { case: 'result', value: resultToPb(r) } });
            },
            (err) => {
              failure = err;
            },
          )
          .finally(() => {
            done = true;
            wake?.();
          });
        while (true) {
          while (queue.length > 0) yield queue.shift() as ExecResponse;
          if (done) break;
          await new Promise<void>((r) => {
            wake = r;
          });
          wake = undefined;
        }
        while (queue.length > 0) yield queue.shift() as ExecResponse;
        if (failure) throw toConnectError(failure);
        if (final) yield final;
      },

      writeFile: edge(async (req) => {
        const w = await agent.writeFile(req.vmId, req.path, Buffer.from(req.content), req.mode);
        return create(WriteFileResponseSchema, { path: w.path, bytesWritten: BigInt(w.bytesWritten) });
      }),
      readFile: edge(async (req) => {
        const r = await agent.readFile(req.vmId, req.path, Number(req.maxBytes));
        return create(ReadFileResponseSchema, {
          path: r.path,
          content: new Uint8Array(r.data),
          size: BigInt(r.size),
        });
      }),
      listFiles: edge(async (req) => {
        const l = await agent.listFiles(req.vmId, req.path);
        return create(ListFilesResponseSchema, {
          path: l.path,
          truncated: l.truncated,
          entries: l.entries.map((e) => create(FileEntrySchema, { ...e, size: BigInt(e.size) })),
        });
      }),
      installPackages: edge(async (req) => {
        const r = await agent.installPackages(req.vmId, req.packages, req.manager, req.timeoutMs);
        return create(InstallPackagesResponseSchema, { manager: r.manager, result: resultToPb(r) });
      }),
      getNodeInfo: edge(async () => {
        const i = agent.info();
        return create(GetNodeInfoResponseSchema, {
          nodeName: i.nodeName,
          accelerator: i.accelerator,
          agentVersion: i.agentVersion,
          capacityVms: i.capacity.vms,
          capacityCpus: i.capacity.cpus,
          capacityMemoryMib: i.capacity.memoryMiB,
          allocatedVms: i.allocated.vms,
          allocatedCpus: i.allocated.cpus,
          allocatedMemoryMib: i.allocated.memoryMiB,
          runtimes: i.runtimes,
        });
      }),
    });
}
