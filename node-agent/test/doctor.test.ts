import { ensureGuestImages } from '@waggle/test';
import { describe, expect, it } from 'vitest';
import { checkImage } from '../src/doctor.ts';

describe('doctor image checks (debugfs on the real built images)', () => {
  it('passes the built python image and names what a wrong runtime lacks', { timeout: 900_000 }, async () => {
    const images = await ensureGuestImages(['python']);
    const image = images.rootfs.python as string;
    const good = await checkImage(image, 'python');
    expect(good.filter((c) => !c.ok)).toEqual([]);
    expect(good.length).toBeGreaterThan(10);
    const wrong = await checkImage(image, 'node');
    expect(wrong.filter((c) => !c.ok).map((c) => c.what)).toContain('image has /usr/bin/node');
  });
});
