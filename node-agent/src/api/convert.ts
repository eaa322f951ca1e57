import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { EGRESS_MODES, RUNTIMES } from '@waggle/crds';
import { InvalidArgumentError } from '../errors.ts';
import {
  type ExecResult,
  ExecResultSchema,
  type VMSpec as PbVMSpec,
  type ReadProcessOutputResponseSchema,
  type VM,
  VMOrigin,
  VMSchema,
  VMState,
} from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import type { GuestRunResult } from '../guest/exec.ts';
import type { ProcessOutput } from '../guest/processes.ts';
import { fromProtoEgress, fromProtoRuntime, toProtoEgress, toProtoRuntime } from '../proto-enums.ts';
import type { CreateVMSpec, OwnedVMRecord, VMRecord, VMSpec } from '../vm/vm-record.ts';

const protoNames = (prefix: string, words: readonly string[]) =>
  words.map((w) => `${prefix}_${w.toUpperCase()}`).join(', ');

const STATES: Record<VMRecord['state'], VMState> = {
  booting: VMState.VM_STATE_BOOTING,
  running: VMState.VM_STATE_RUNNING,
  failed: VMState.VM_STATE_FAILED,
  exited: VMState.VM_STATE_FAILED,
  suspended: VMState.VM_STATE_SUSPENDED,
};

const ORIGINS: Record<VMRecord['origin'], VMOrigin> = {
  cold: VMOrigin.VM_ORIGIN_COLD,
  restored: VMOrigin.VM_ORIGIN_RESTORED,
  warm: VMOrigin.VM_ORIGIN_WARM,
};

/** A request's runtime, or InvalidArgument naming `field` and the values it may take. */
export function runtimeFromPb(runtime: number, field = 'runtime'): VMSpec['runtime'] {
  const r = fromProtoRuntime(runtime);
  if (!r) throw new InvalidArgumentError(`${field} must be one of ${protoNames('RUNTIME', RUNTIMES)}`);
  return r;
}

export function specFromPb(spec: PbVMSpec | undefined): CreateVMSpec {
  if (!spec) throw new InvalidArgumentError('spec is required');
  const runtime = runtimeFromPb(spec.runtime, 'spec.runtime');
  const egress = fromProtoEgress(spec.egress);
  if (!egress)
    throw new InvalidArgumentError(`spec.egress must be one of ${protoNames('EGRESS', EGRESS_MODES)}`);
  return {
    vmId: spec.vmId,
    runtime,
    cpus: spec.cpus,
    memoryMiB: spec.memoryMib,
    diskMiB: spec.diskMib,
    egress,
    allowDomains: [...spec.allowDomains],
    ...(spec.image ? { image: spec.image } : {}),
  };
}

export function vmToPb(vm: OwnedVMRecord): VM {
  return create(VMSchema, {
    spec: {
      vmId: vm.vmId,
      runtime: toProtoRuntime(vm.runtime),
      cpus: vm.cpus,
      memoryMib: vm.memoryMiB,
      diskMib: vm.diskMiB,
      egress: toProtoEgress(vm.egress),
      allowDomains: vm.allowDomains,
      image: vm.image?.reference ?? '',
    },
    state: STATES[vm.state],
    message: vm.message ?? '',
    createdAt: vm.createdAt,
    readyAt: vm.readyAt ?? '',
    bootMs: vm.bootMs ?? 0,
    sshPort: 22, // on the VM namespace's address (not a node port)
    origin: ORIGINS[vm.origin],
    pool: vm.pool ?? '',
    suspendedAt: vm.suspendedAt ?? '',
    resumedAt: vm.resumedAt ?? '',
    resumeMs: vm.resumeMs ?? 0,
    imageDigest: vm.image?.digest ?? '',
  });
}

export function resultToPb(r: GuestRunResult): ExecResult {
  return create(ExecResultSchema, {
    stdout: r.stdout,
    stderr: r.stderr,
    ...(r.exitCode !== null ? { exitCode: r.exitCode } : {}),
    timedOut: r.timedOut,
    cancelled: r.cancelled,
    durationMs: r.durationMs,
    stdoutBytes: BigInt(r.stdoutBytes),
    stderrBytes: BigInt(r.stderrBytes),
    stdoutTruncated: r.stdoutTruncated,
    stderrTruncated: r.stderrTruncated,
  });
}

export function processOutputToPb(
  o: ProcessOutput,
): MessageInitShape<typeof ReadProcessOutputResponseSchema> {
  return {
    processId: o.processId,
    language: o.language,
    stdout: o.stdout,
    stderr: o.stderr,
    nextSince: BigInt(o.nextSince),
    droppedBytes: BigInt(o.droppedBytes),
    more: o.more,
    running: o.running,
    ...(o.exitCode !== undefined ? { exitCode: o.exitCode } : {}),
    killed: o.killed,
    stdoutBytes: BigInt(o.stdoutBytes),
    stderrBytes: BigInt(o.stderrBytes),
    startedAt: o.startedAt,
    endedAt: o.endedAt ?? '',
    message: o.message,
  };
}
