import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { Egress, Runtime, WarmPoolSchema } from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import { MAX_REPLICAS } from '../pool/pool-spec.ts';
import { warmPoolsFromPb } from './warm-pools-convert.ts';

const template = {
  vmId: 'ignored',
  runtime: Runtime.PYTHON,
  cpus: 1,
  memoryMib: 256,
  diskMib: 1024,
  egress: Egress.ALL,
  allowDomains: ['Example.org', '*.b.net'],
};
const pb = (over: Record<string, unknown> = {}) =>
  create(WarmPoolSchema, { name: 'team-a/py', template, replicas: 2, ...over });

describe('warmPoolsFromPb', () => {
  it('takes a pool with the template of CreateVM, without its vm id, domains normalised', () => {
    expect(warmPoolsFromPb([pb()])).toEqual([
      {
        name: 'team-a/py',
        replicas: 2,
        template: {
          runtime: 'python',
          cpus: 1,
          memoryMiB: 256,
          diskMiB: 1024,
          egress: 'all',
          allowDomains: ['*.b.net', 'example.org'],
        },
      },
    ]);
  });

  it.each([
    {
      case: 'a name without namespace',
      pools: [pb({ name: 'py' })],
      error: /pools\[0\]\.name: "py" is not "<namespace>\/<name>"/,
    },
    { case: 'an upper-case name', pools: [pb({ name: 'Team/py' })], error: /pools\[0\]\.name/ },
    { case: 'a name twice', pools: [pb(), pb()], error: /pools\[1\]\.name: "team-a\/py" is named twice/ },
    { case: 'no template', pools: [pb({ template: undefined })], error: /pools\[0\]\.template: .*required/ },
    {
      case: 'an unknown runtime',
      pools: [pb({ template: { ...template, runtime: 0 } })],
      error: /pools\[0\]\.template: .*runtime must be one of/,
    },
    {
      case: 'too little memory',
      pools: [pb({ template: { ...template, memoryMib: 64 } })],
      error: /pools\[0\]\.template\.memoryMiB/,
    },
    {
      case: 'too many replicas',
      pools: [pb({ replicas: MAX_REPLICAS + 1 })],
      error: /pools\[0\]\.replicas: must be 0\.\.1024/,
    },
  ])('refuses $case', ({ pools, error }) => {
    expect(() => warmPoolsFromPb(pools)).toThrow(error);
  });
});
