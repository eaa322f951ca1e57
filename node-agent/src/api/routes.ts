import { create } from '@bufbuild/protobuf';
import type { ConnectRouter } from '@connectrpc/connect';
import type { Agent } from '../agent.ts';
import { InvalidArgumentError } from '../errors.ts';
import {
  CreateVMResponseSchema,
  DestroyVMResponseSchema,
  type ExecResponse,
  ExecResponseSchema,
  FileEntrySchema,
  GetNodeInfoResponseSchema,
  GetVMResponseSchema,
  ImagePullPhase,
  type InstallPackagesResponse,
  InstallPackagesResponseSchema,
  KillProcessResponseSchema,
  ListFilesResponseSchema,
  ListVMsResponseSchema,
  NodeAgentService,
  PulledImageSchema,
  type PullImageResponse,
  PullImageResponseSchema,
  ReadFileResponseSchema,
  ReadProcessOutputResponseSchema,
  ResumeVMResponseSchema,
  SetWarmPoolsResponseSchema,
  StartProcessResponseSchema,
  SuspendVMResponseSchema,
  WriteFileResponseSchema,
} from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import type { ImagePhase } from '../images/oci-image-store.ts';
import { edge } from './connect-errors.ts';
import { processOutputToPb, resultToPb, runtimeFromPb, specFromPb, vmToPb } from './convert.ts';
import { forwardPort } from './forward-port.ts';
import { streamEvents, streamOutput } from './output-stream.ts';
import { warmPoolStatusToPb, warmPoolsFromPb } from './warm-pools-convert.ts';

/** Registers the NodeAgentService handlers: protocol translation only, the work is in Agent. */
export function nodeAgentRoutes(agent: Agent) {
  return (router: ConnectRouter) =>
    router.service(NodeAgentService, {
      createVM: edge(async (req) =>
        create(CreateVMResponseSchema, {
          vm: vmToPb(
            await agent.createVM(specFromPb(req.spec), {
              ...(req.pool ? { pool: req.pool } : {}),
              ...(req.imagePullConfig ? { imagePullConfig: req.imagePullConfig } : {}),
            }),
          ),
        }),
      ),
      getVM: edge(async (req) => create(GetVMResponseSchema, { vm: vmToPb(agent.vms.get(req.vmId)) })),
      listVMs: edge(async () => create(ListVMsResponseSchema, { vms: agent.vms.listOwned().map(vmToPb) })),
      destroyVM: edge(async (req) =>
        create(DestroyVMResponseSchema, { existed: await agent.destroyVM(req.vmId) }),
      ),
      suspendVM: edge(async (req) => {
        const s = await agent.suspendVM(req.vmId);
        return create(SuspendVMResponseSchema, {
          vm: vmToPb(s.vm),
          stateBytes: BigInt(s.stateBytes),
          suspendMs: s.suspendMs,
        });
      }),
      resumeVM: edge(async (req) => {
        const r = await agent.resumeVM(req.vmId);
        return create(ResumeVMResponseSchema, { vm: vmToPb(r.vm), resumeMs: r.resumeMs });
      }),

      exec: (req, ctx): AsyncGenerator<ExecResponse> =>
        streamOutput(
          (onOutput) =>
            agent.exec({
              vmId: req.vmId,
              code: req.code,
              language: req.language,
              timeoutMs: req.timeoutMs,
              maxOutputBytes: req.maxOutputBytes,
              signal: ctx.signal,
              onOutput,
            }),
          (stream, value) => create(ExecResponseSchema, { event: { case: stream, value } }),
          (r) => create(ExecResponseSchema, { event: { case: 'result', value: resultToPb(r) } }),
        ),

      forwardPort: (requests, ctx) => forwardPort(agent, requests, ctx),

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
      installPackages: (req, ctx): AsyncGenerator<InstallPackagesResponse> =>
        streamOutput(
          (onOutput) =>
            agent.installPackages(req.vmId, req.packages, req.manager, req.timeoutMs, {
              signal: ctx.signal,
              onOutput,
            }),
          (stream, value) => create(InstallPackagesResponseSchema, { [stream]: value }),
          (r) => create(InstallPackagesResponseSchema, { manager: r.manager, result: resultToPb(r) }),
        ),
      pullImage: (req, ctx): AsyncGenerator<PullImageResponse> =>
        streamEvents(
          async (emit: (phase: ImagePullPhase) => void) => {
            if (!req.image) throw new InvalidArgumentError('image is required (an OCI image reference)');
            return agent.pullImage(req.image, runtimeFromPb(req.runtime), {
              ...(req.imagePullConfig ? { imagePullConfig: req.imagePullConfig } : {}),
              ...(req.vmId ? { vmId: req.vmId } : {}),
              onProgress: (phase) => {
                if (ctx.signal.aborted) return;
                const pb = PULL_PHASES[phase];
                if (pb !== undefined) emit(pb);
              },
            });
          },
          (phase) => create(PullImageResponseSchema, { event: { case: 'phase', value: phase } }),
          (image) =>
            create(PullImageResponseSchema, {
              event: {
                case: 'image',
                value: create(PulledImageSchema, {
                  reference: image.reference,
                  digest: image.digest,
                  unpackedBytes: BigInt(image.unpackedBytes),
                  rootfsBytes: BigInt(image.rootfsBytes),
                  cached: image.cached,
                }),
              },
            }),
        ),
      startProcess: edge(async (req) =>
        create(
          StartProcessResponseSchema,
          await agent.startProcess({ vmId: req.vmId, code: req.code, language: req.language }),
        ),
      ),
      readProcessOutput: edge(async (req, ctx) =>
        create(
          ReadProcessOutputResponseSchema,
          processOutputToPb(
            await agent.readProcessOutput({
              vmId: req.vmId,
              processId: req.processId,
              since: Number(req.since),
              maxBytes: req.maxBytes,
              waitMs: req.waitMs,
              signal: ctx.signal,
            }),
          ),
        ),
      ),
      killProcess: edge(async (req) => {
        const k = await agent.killProcess(req.vmId, req.processId);
        return create(KillProcessResponseSchema, {
          wasRunning: k.wasRunning,
          ...(k.exitCode !== undefined ? { exitCode: k.exitCode } : {}),
        });
      }),
      setWarmPools: edge(async (req) => {
        const pools = await agent.setWarmPools(warmPoolsFromPb(req.pools));
        return create(SetWarmPoolsResponseSchema, { pools: pools.map(warmPoolStatusToPb) });
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
          pools: i.pools.map(warmPoolStatusToPb),
          warmVms: i.warmVMs,
          suspendedVms: i.suspendedVMs,
        });
      }),
    });
}

/** The store's phases as the API names them ("cached" is said by the final message). */
const PULL_PHASES: Partial<Record<ImagePhase, ImagePullPhase>> = {
  resolving: ImagePullPhase.RESOLVING,
  pulling: ImagePullPhase.PULLING,
  unpacking: ImagePullPhase.UNPACKING,
  building: ImagePullPhase.BUILDING,
};
