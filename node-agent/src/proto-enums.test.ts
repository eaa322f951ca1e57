import { EGRESS_MODES, RUNTIMES } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { Egress, Runtime } from './gen/waggle/nodeagent/v1/node_agent_pb.js';
import { fromProtoEgress, fromProtoRuntime, toProtoEgress, toProtoRuntime } from './proto-enums.ts';

describe('proto enum translation', () => {
  it('maps every runtime to its own proto value and back', () => {
    const protos = RUNTIMES.map(toProtoRuntime);
    expect(protos).toEqual([Runtime.PYTHON, Runtime.NODE, Runtime.SHELL]);
    expect(protos.map(fromProtoRuntime)).toEqual([...RUNTIMES]);
  });

  it('knows no runtime for RUNTIME_UNSPECIFIED or a value from a newer proto', () => {
    expect(fromProtoRuntime(Runtime.UNSPECIFIED)).toBeUndefined();
    expect(fromProtoRuntime(99 as Runtime)).toBeUndefined();
  });

  it('maps every egress mode to its own proto value and back', () => {
    const protos = EGRESS_MODES.map(toProtoEgress);
    expect(protos).toEqual([Egress.NONE, Egress.ALL]);
    expect(protos.map(fromProtoEgress)).toEqual([...EGRESS_MODES]);
  });

  it('reads EGRESS_UNSPECIFIED as all and refuses an unknown mode instead of widening it', () => {
    expect(fromProtoEgress(Egress.UNSPECIFIED)).toBe('all');
    expect(fromProtoEgress(7 as Egress)).toBeUndefined();
  });
});
