// The one translation between the API's words (`@waggle/crds`: runtimes, egress modes) and the
// node-agent proto's enums. The agent's server and its callers (operator, gateway, through
// `@waggle/node-agent/client`) all use it, so a new runtime or mode is added in one place.
import { EGRESS_MODES, type EgressMode, RUNTIMES, type Runtime } from '@waggle/crds';
import { Egress as ProtoEgress, Runtime as ProtoRuntime } from './gen/waggle/nodeagent/v1/node_agent_pb.js';

const RUNTIME_TO_PROTO = {
  python: ProtoRuntime.PYTHON,
  node: ProtoRuntime.NODE,
  shell: ProtoRuntime.SHELL,
} as const satisfies Record<Runtime, ProtoRuntime>;

const EGRESS_TO_PROTO = {
  all: ProtoEgress.ALL,
  none: ProtoEgress.NONE,
} as const satisfies Record<EgressMode, ProtoEgress>;

/** `spec.runtime` → the proto enum. */
export function toProtoRuntime(runtime: Runtime): ProtoRuntime {
  return RUNTIME_TO_PROTO[runtime];
}

/** The proto enum → `spec.runtime`; undefined for RUNTIME_UNSPECIFIED and values it does not know. */
export function fromProtoRuntime(runtime: ProtoRuntime): Runtime | undefined {
  return RUNTIMES.find((r) => RUNTIME_TO_PROTO[r] === runtime);
}

/** `spec.network.egress` → the proto enum. */
export function toProtoEgress(egress: EgressMode): ProtoEgress {
  return EGRESS_TO_PROTO[egress];
}

/**
 * The proto enum → `spec.network.egress`: EGRESS_UNSPECIFIED is `all` (the proto's contract);
 * undefined for values it does not know (a newer caller's mode is refused, never widened).
 */
export function fromProtoEgress(egress: ProtoEgress): EgressMode | undefined {
  if (egress === ProtoEgress.UNSPECIFIED) return 'all';
  return EGRESS_MODES.find((e) => EGRESS_TO_PROTO[e] === egress);
}
