import { describe, expect, it } from 'vitest';
import type { WaggleEnvironment, WaggleEnvironmentStatus } from './environment.ts';
import { suspension } from './suspension.ts';

const withStatus = (status: WaggleEnvironmentStatus): WaggleEnvironment =>
  ({
    apiVersion: 'waggle.dev/v1alpha1',
    kind: 'WaggleEnvironment',
    metadata: { name: 'e', namespace: 'n' },
    spec: { runtime: 'python' },
    status,
  }) as unknown as WaggleEnvironment;

const ready = (status: 'True' | 'False', reason: string) => [
  { type: 'Ready', status, reason, message: '', lastTransitionTime: '2026-12-02T10:00:00Z' },
];

describe('suspension', () => {
  it.each<[string, WaggleEnvironmentStatus, ReturnType<typeof suspension>]>([
    ['phase Suspended', { phase: 'Suspended', conditions: ready('False', 'Suspended') }, 'suspended'],
    [
      'Running, Ready=False Suspended',
      { phase: 'Running', conditions: ready('False', 'Suspended') },
      'suspending',
    ],
    ['Running and ready', { phase: 'Running', conditions: ready('True', 'Running') }, undefined],
    [
      'Running, node unreachable',
      { phase: 'Running', conditions: ready('False', 'NodeUnreachable') },
      undefined,
    ],
    ['Booting', { phase: 'Booting' }, undefined],
  ])('%s → %s', (_case, status, want) => {
    expect(suspension(withStatus(status))).toBe(want);
  });
});
