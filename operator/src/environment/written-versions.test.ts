import type { WaggleEnvironment } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { WrittenVersions } from './written-versions.ts';

const at = (resourceVersion: string, uid = 'u') =>
  ({ metadata: { uid, resourceVersion } }) as unknown as WaggleEnvironment;

describe('WrittenVersions', () => {
  it('calls an older cached object stale until the cache shows the noted write', () => {
    const w = new WrittenVersions();
    expect(w.isStale(at('5'))).toBe(false);
    w.note(at('10'));
    expect(w.isStale(at('9'))).toBe(true);
    expect(w.isStale(at('9', 'other'))).toBe(false);
    expect(w.isStale(at('10'))).toBe(false);
    expect(w.isStale(at('9'))).toBe(false); // caught up once: forgotten
    w.note(at('20'));
    expect(w.isStale(at('x'))).toBe(false); // not an integer: never judged
    w.note(at('30'));
    w.forget('u');
    expect(w.isStale(at('1'))).toBe(false);
  });
});
