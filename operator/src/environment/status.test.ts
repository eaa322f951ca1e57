import type { WaggleEnvironment } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { booting } from './status.ts';

const env = (spec: Partial<WaggleEnvironment['spec']>) =>
  ({ metadata: { name: 'e', uid: 'u' }, spec: { runtime: 'python', ...spec } }) as WaggleEnvironment;

describe('booting', () => {
  it('says that an image may be pulled first, naming it and the node', () => {
    const s = booting(
      env({ image: 'registry.example.com/t/ds:1' }),
      new Date(0),
      'n1',
      '1970-01-01T01:00:00Z',
    );
    expect(s.message).toBe(
      'booting a python microVM on n1 from image registry.example.com/t/ds:1 (pulled first if n1 does not have it)',
    );
    expect(s.conditions?.[0]).toMatchObject({
      type: 'Ready',
      status: 'False',
      reason: 'Booting',
      message:
        'creating the VM on n1 (pulling image registry.example.com/t/ds:1 if the node does not have it)',
    });
  });
  it('keeps the plain message for the built-in image', () => {
    expect(booting(env({}), new Date(0), 'n1', '1970-01-01T01:00:00Z').message).toBe(
      'booting a python microVM on n1',
    );
  });
});
