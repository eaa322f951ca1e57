import { describe, expect, it } from 'vitest';
import { type TemplateImages, templateHash, templateOf } from './template.ts';

const images: TemplateImages = {
  kernel: { path: '/img/vmlinuz', size: 100, mtimeMs: 1 },
  initrd: { path: '/img/initramfs.img', size: 50, mtimeMs: 1 },
  rootfs: { path: '/img/python/rootfs.ext4', size: 1000, mtimeMs: 1 },
  backend: 'qemu-microvm',
};
const spec = {
  vmId: 'env-1',
  runtime: 'python' as const,
  cpus: 1,
  memoryMiB: 512,
  diskMiB: 1024,
  egress: 'all' as const,
  allowDomains: ['Example.org', '*.example.net'],
};

describe('templates', () => {
  it('are everything but the owner: two VMs of one spec share a hash whatever their ids', () => {
    expect(templateOf(spec)).not.toHaveProperty('vmId');
    const a = templateHash(templateOf(spec), images);
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(templateHash(templateOf({ ...spec, vmId: 'env-2' }), images)).toBe(a);
    // The order and case of allowed domains make no other template.
    expect(
      templateHash(templateOf({ ...spec, allowDomains: ['*.example.net', 'example.org'] }), images),
    ).toBe(a);
  });

  it('change with any resource, the network, the images, the CA bundle or the backend', () => {
    const a = templateHash(spec, images);
    const variants = [
      templateHash({ ...spec, cpus: 2 }, images),
      templateHash({ ...spec, memoryMiB: 1024 }, images),
      templateHash({ ...spec, diskMiB: 2048 }, images),
      templateHash({ ...spec, egress: 'none' }, images),
      templateHash({ ...spec, allowDomains: [] }, images),
      templateHash({ ...spec, runtime: 'node' }, images),
      templateHash(spec, { ...images, rootfs: { ...images.rootfs, mtimeMs: 2 } }),
      templateHash(spec, { ...images, rootfs: { ...images.rootfs, size: 1001 } }),
      templateHash(spec, { ...images, kernel: { ...images.kernel, path: '/other/vmlinuz' } }),
      templateHash(spec, { ...images, initrd: { ...images.initrd, mtimeMs: 5 } }),
      templateHash(spec, { ...images, backend: 'firecracker' }),
      templateHash(spec, { ...images, caBundle: { path: '/etc/ssl/certs/ca.crt', size: 1, mtimeMs: 1 } }),
    ];
    expect(new Set([a, ...variants]).size).toBe(variants.length + 1);
  });
});
