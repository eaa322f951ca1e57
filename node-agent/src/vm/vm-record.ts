import { randomBytes } from 'node:crypto';
import {
  ALLOW_DOMAIN_PATTERN,
  egressModeSchema,
  MAX_ALLOW_DOMAINS,
  RESOURCE_LIMITS,
  runtimeSchema,
} from '@waggle/crds';
import { z } from 'zod';
import { vmNetworkSchema } from './network/vm-network-record.ts';

export const VM_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * The OCI image a VM runs (docs/adr/0015), resolved by the node's image store: absent for the
 * node's built-in image of the runtime.
 */
export const vmImageSchema = z.object({
  /** Normalized reference as asked for (`registry/repository:tag`). */
  reference: z.string().min(1),
  /** linux/amd64 manifest digest: what the VM really runs, whatever the tag says later. */
  digest: z.string().regex(/^sha256:[a-f0-9]{64}$/),
  /** The store's ext4 root filesystem the VM's disk is overlaid on. */
  rootfs: z.string().startsWith('/'),
  /** Guest path of the runtime's interpreter found in the image (python3, node; sh/bash for shell). */
  interpreter: z.string().startsWith('/').optional(),
  /** The image config's PATH entries: code finds the image's tools by name (sandboxPath). */
  path: z.array(z.string().max(1024)).max(64).optional(),
  /** The image's system package manager (the shell runtime's installs); absent: apt. */
  systemPackages: z.enum(['apt', 'apk', 'none']).optional(),
});
export type VMImage = z.output<typeof vmImageSchema>;

export const vmSpecSchema = z.object({
  /** Stable id chosen by the caller (the environment's UID): CreateVM is idempotent on it. */
  vmId: z.string().regex(VM_ID_PATTERN, {
    error:
      'vmId must be 1-63 characters of lowercase letters, digits and dashes, starting with a letter or digit',
  }),
  runtime: runtimeSchema,
  cpus: z.int().min(RESOURCE_LIMITS.cpus.min).max(RESOURCE_LIMITS.cpus.max),
  memoryMiB: z.int().min(RESOURCE_LIMITS.memoryMiB.min).max(RESOURCE_LIMITS.memoryMiB.max),
  diskMiB: z.int().min(RESOURCE_LIMITS.diskMiB.min).max(RESOURCE_LIMITS.diskMiB.max),
  egress: egressModeSchema,
  /**
   * With egress `all`: the only names the guest may resolve and reach (`example.org`,
   * `*.example.net`); empty means the whole internet.
   */
  allowDomains: z
    .array(
      z
        .string()
        // The API's pattern, case-insensitive: names are compared lowercased.
        .regex(new RegExp(ALLOW_DOMAIN_PATTERN.source, 'i'), {
          error: 'allowDomains entries are domain names like "example.org" or "*.example.net"',
        }),
    )
    .max(MAX_ALLOW_DOMAINS)
    .default([]),
  image: vmImageSchema.optional(),
});
export type VMSpec = z.output<typeof vmSpecSchema>;
/** What CreateVM asks for: the image as a reference, resolved by the agent into a `VMImage`. */
export type CreateVMSpec = Omit<VMSpec, 'image'> & { image?: string };
export type VMSpecInput = z.input<typeof vmSpecSchema>;

/** A VM's spec without its owner: what makes two VMs interchangeable (docs/adr/0014). */
export const vmTemplateSchema = vmSpecSchema.omit({ vmId: true });
export type VMTemplate = z.output<typeof vmTemplateSchema>;
export type VMTemplateInput = z.input<typeof vmTemplateSchema>;

/**
 * `exited`: it was running and its QEMU went away (the record stays until DestroyVM).
 * `suspended`: its whole state is saved next to its overlay and no QEMU runs (ResumeVM).
 */
export const vmStateSchema = z.enum(['booting', 'running', 'failed', 'exited', 'suspended']);
export type VMState = z.output<typeof vmStateSchema>;

/** How the VM came to be: booted from the image, restored from a snapshot, or a bound warm VM. */
export const vmOriginSchema = z.enum(['cold', 'restored', 'warm']);
export type VMOrigin = z.output<typeof vmOriginSchema>;

/** `i-` and 16 hex digits; records written before instance ids use their vm id (same alphabet). */
export const INSTANCE_ID_PATTERN = VM_ID_PATTERN;

/** A fresh instance id: the name of a VM's state directory, QEMU marker and cgroup. */
export function newInstanceId(): string {
  return `i-${randomBytes(8).toString('hex')}`;
}

/**
 * What the agent persists per VM instance (`<stateDir>/vms/<instanceId>/vm.json`) so a restart
 * can re-adopt it. `vmId` is the owner (absent while the VM waits unowned in a warm pool).
 */
export const vmRecordSchema = vmTemplateSchema.extend({
  instanceId: z.string().regex(INSTANCE_ID_PATTERN),
  vmId: vmSpecSchema.shape.vmId.optional(),
  /** templateHash of the VM's template and images (see template.ts). */
  templateHash: z.string(),
  /** The warm pool ("<namespace>/<name>") the VM was booted for. */
  pool: z.string().optional(),
  origin: vmOriginSchema,
  state: vmStateSchema,
  network: vmNetworkSchema,
  pid: z.int(),
  createdAt: z.string(),
  readyAt: z.string().optional(),
  bootMs: z.number().optional(),
  /** When a warm VM was given its owner. */
  boundAt: z.string().optional(),
  suspendedAt: z.string().optional(),
  resumedAt: z.string().optional(),
  resumeMs: z.number().optional(),
  /** OpenSSH public key of the guest's host key, pinned by the SSH client. */
  hostPublicKey: z.string(),
  message: z.string().optional(),
  /** The VM's network was released when it exited (its /30 may belong to another VM now). */
  networkReleased: z.boolean().optional(),
});
export type VMRecord = z.output<typeof vmRecordSchema>;
/** A record with an owner: what the API shows. */
export type OwnedVMRecord = VMRecord & { vmId: string };

export const isOwned = (r: VMRecord): r is OwnedVMRecord => r.vmId !== undefined;

/**
 * Reads a persisted record of the directory `dirName`. Records written before instance ids
 * (directory = vm id, no instanceId/templateHash/origin) are adopted with instance id = the
 * directory name, an unknown template (matches no other) and origin cold. Undefined if invalid.
 */
export function parseRecord(raw: unknown, dirName: string): VMRecord | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  const migrated =
    r.instanceId === undefined
      ? { templateHash: '', origin: 'cold', ...r, instanceId: dirName, vmId: r.vmId ?? dirName }
      : r;
  const parsed = vmRecordSchema.safeParse(migrated);
  if (!parsed.success || parsed.data.instanceId !== dirName) return undefined;
  return parsed.data;
}

export function sameSpec(a: VMTemplate & { vmId?: string }, b: VMSpec): boolean {
  return a.vmId === b.vmId && sameTemplate(a, b);
}

export function sameTemplate(a: VMTemplate, b: VMTemplate): boolean {
  return (
    a.runtime === b.runtime &&
    a.cpus === b.cpus &&
    a.memoryMiB === b.memoryMiB &&
    a.diskMiB === b.diskMiB &&
    a.egress === b.egress &&
    a.allowDomains.join(',') === b.allowDomains.join(',') &&
    a.image?.digest === b.image?.digest
  );
}
