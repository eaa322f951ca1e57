import type { WaggleEnvironment } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { booting } from './status.ts';

const env = (spec: Partial<WaggleEnvironment['spec']>) =>
  ({ metadata: { name: 'e', uid: 'u' }, spec: { runtime: 'python', ...spec } }) as WaggleEnvironment;

describe('booting', () => {
  it('with an image: says the pull first, then each step, then the digest', () => {
    const e = env({ image: 'registry.example.com/t/ds:1' });
    const at = (pull?: Parameters<typeof booting>[4]) =>
      booting(e, new Date(0), 'n1', '1970-01-01T01:00:00Z', pull);
    const image = (s: ReturnType<typeof booting>) => s.conditions?.find((c) => c.type === 'ImageReady');
    const ready = (s: ReturnType<typeof booting>) => s.conditions?.find((c) => c.type === 'Ready');

    const first = at();
    expect(first.message).toBe(
      'pulling image registry.example.com/t/ds:1 on n1: pulling it unless the node has it',
    );
    expect(image(first)).toMatchObject({ status: 'False', reason: 'PullingImage' });
    expect(ready(first)).toMatchObject({
      status: 'False',
      reason: 'Booting',
      message: 'pulling the image on n1',
    });

    const unpacking = at({ step: 'unpacking' });
    expect(unpacking.message).toBe('pulling image registry.example.com/t/ds:1 on n1: unpacking the layers');
    expect(image(unpacking)?.message).toBe('n1: unpacking the layers');

    const digest = `sha256:${'0'.repeat(64)}`;
    const pulled = at({ image: { digest, cached: false, ms: 8_240 } });
    expect(pulled.message).toBe('booting a python microVM on n1 from image registry.example.com/t/ds:1');
    expect(pulled.imageDigest).toBe(digest);
    expect(image(pulled)).toMatchObject({
      status: 'True',
      reason: 'ImagePulled',
      message: `registry.example.com/t/ds:1 is ${digest}, pulled to n1 in 8.2 s`,
    });
    expect(image(at({ image: { digest, cached: true, ms: 30 } }))?.message).toBe(
      `registry.example.com/t/ds:1 is ${digest}, already on n1`,
    );
  });
  it('keeps the plain message for the built-in image, with no ImageReady condition', () => {
    const s = booting(env({}), new Date(0), 'n1', '1970-01-01T01:00:00Z');
    expect(s.message).toBe('booting a python microVM on n1');
    expect(s.conditions?.map((c) => c.type)).toEqual(['Ready']);
  });
});
