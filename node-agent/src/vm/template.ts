import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { VMTemplate, VMTemplateInput } from './vm-record.ts';

/** What identifies a file for a template: a changed image (new size or mtime) is a new template. */
export interface FileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
}

/** The files and backend a VM of a template runs on. */
export interface TemplateImages {
  kernel: FileIdentity;
  initrd: FileIdentity;
  rootfs: FileIdentity;
  /** The CA bundle the guests are given at boot (a snapshot keeps the one it booted with). */
  caBundle?: FileIdentity;
  /** The backend kind (e.g. `qemu-microvm`): a snapshot is only restorable by the backend that made it. */
  backend: string;
}

/** A spec without its owner: everything that makes two VMs interchangeable. */
export function templateOf(spec: VMTemplateInput & { vmId?: string }): VMTemplate {
  return {
    runtime: spec.runtime,
    cpus: spec.cpus,
    memoryMiB: spec.memoryMiB,
    diskMiB: spec.diskMiB,
    egress: spec.egress,
    // Order and case do not make another template.
    allowDomains: [...new Set((spec.allowDomains ?? []).map((d) => d.toLowerCase()))].sort(),
    ...(spec.image ? { image: spec.image } : {}),
  };
}

/**
 * sha256 (16 hex digits) of a template and the identity of its images and backend: keys the
 * snapshots and warm VMs of a node. Pure.
 */
export function templateHash(template: VMTemplateInput, images: TemplateImages): string {
  const t = templateOf(template);
  const canonical = JSON.stringify([
    'waggle-template/v1',
    t.runtime,
    t.cpus,
    t.memoryMiB,
    t.diskMiB,
    t.egress,
    t.allowDomains,
    ...(t.image ? [['image', t.image.digest]] : []),
    [images.kernel.path, images.kernel.size, images.kernel.mtimeMs],
    [images.initrd.path, images.initrd.size, images.initrd.mtimeMs],
    [images.rootfs.path, images.rootfs.size, images.rootfs.mtimeMs],
    images.backend,
    ...(images.caBundle ? [[images.caBundle.path, images.caBundle.size, images.caBundle.mtimeMs]] : []),
  ]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** Path, size and mtime of a file (rejects if it is missing). */
export async function fileIdentity(path: string): Promise<FileIdentity> {
  const st = await stat(path);
  return { path, size: st.size, mtimeMs: Math.trunc(st.mtimeMs) };
}
