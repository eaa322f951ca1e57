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
});
export type VMSpec = z.output<typeof vmSpecSchema>;
export type VMSpecInput = z.input<typeof vmSpecSchema>;

/** `exited`: it was running and its QEMU went away (the record stays until DestroyVM). */
export const vmStateSchema = z.enum(['booting', 'running', 'failed', 'exited']);
export type VMState = z.output<typeof vmStateSchema>;

/** What the agent persists per VM (`<stateDir>/vms/<vmId>/vm.json`) so a restart can re-adopt it. */
export const vmRecordSchema = vmSpecSchema.extend({
  state: vmStateSchema,
  network: vmNetworkSchema,
  pid: z.int(),
  createdAt: z.string(),
  readyAt: z.string().optional(),
  bootMs: z.number().optional(),
  /** OpenSSH public key of the guest's host key, pinned by the SSH client. */
  hostPublicKey: z.string(),
  message: z.string().optional(),
  /** The VM's network was released when it exited (its /30 may belong to another VM now). */
  networkReleased: z.boolean().optional(),
});
export type VMRecord = z.output<typeof vmRecordSchema>;

export function sameSpec(a: VMSpec, b: VMSpec): boolean {
  return (
    a.vmId === b.vmId &&
    a.runtime === b.runtime &&
    a.cpus === b.cpus &&
    a.memoryMiB === b.memoryMiB &&
    a.diskMiB === b.diskMiB &&
    a.egress === b.egress &&
    a.allowDomains.join(',') === b.allowDomains.join(',')
  );
}
