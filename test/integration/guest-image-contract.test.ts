import { describe, expect, it } from 'vitest';
import { checkImage } from '../src/cli/doctor/image-contract.ts';
import { ensureGuestImages } from '../src/guest-images.ts';

describe('pnpm waggle doctor --image: the guest contract (debugfs on the real built images)', () => {
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
