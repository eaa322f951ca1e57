import { z } from 'zod';
import { conditionsSchema, objectMetaSchema, timestamp } from './condition.ts';
import { durationSchema } from './duration.ts';
import { API_VERSION } from './group.ts';
import {
  ALLOW_DOMAIN_PATTERN,
  DEFAULT_EGRESS,
  egressModeSchema,
  MAX_ALLOW_DOMAINS,
  RESOURCE_LIMITS,
  runtimeSchema,
} from './vocabulary.ts';

export const ENVIRONMENT_KIND = 'WaggleEnvironment';
export const ENVIRONMENT_PLURAL = 'waggleenvironments';
export const ENVIRONMENT_SINGULAR = 'waggleenvironment';
export const ENVIRONMENT_SHORT_NAMES = ['wenv'];

export const DURATION_LIMITS = {
  idleTimeout: { min: '1s', max: '168h', default: '30m' },
  maxLifetime: { min: '1s', max: '168h' },
} as const;

const immutable = (what: string) => ({
  'x-kubernetes-validations': [
    { rule: 'self == oldSelf', message: `${what} is immutable; create a new environment instead` },
  ],
});

const int = (limits: { min: number; max: number; default: number }, description: string) =>
  z.int().min(limits.min).max(limits.max).default(limits.default).meta({ description });

export const resourcesSchema = z
  .object({
    cpus: int(RESOURCE_LIMITS.cpus, 'Virtual CPUs for the microVM.'),
    memoryMiB: int(RESOURCE_LIMITS.memoryMiB, 'Guest memory in MiB.'),
    diskMiB: int(
      RESOURCE_LIMITS.diskMiB,
      'Disk of the VM in MiB: its image’s root filesystem plus what the guest writes (copy-on-write over the image). An OCI image whose root filesystem is larger is refused.',
    ),
  })
  .refine((r) => r.memoryMiB >= r.cpus * RESOURCE_LIMITS.minMemoryMiBPerCpu, {
    error: `memoryMiB must be at least ${RESOURCE_LIMITS.minMemoryMiBPerCpu} per cpu`,
    path: ['memoryMiB'],
  })
  // A complete default (not `{}`): the apiserver checks defaults against the CEL rules as they are.
  .default({
    cpus: RESOURCE_LIMITS.cpus.default,
    memoryMiB: RESOURCE_LIMITS.memoryMiB.default,
    diskMiB: RESOURCE_LIMITS.diskMiB.default,
  })
  .meta({
    description: 'Resources of the microVM. Immutable.',
    'x-kubernetes-validations': [
      ...immutable('spec.resources')['x-kubernetes-validations'],
      {
        rule: `self.memoryMiB >= self.cpus * ${RESOURCE_LIMITS.minMemoryMiBPerCpu}`,
        message: `memoryMiB must be at least ${RESOURCE_LIMITS.minMemoryMiBPerCpu} per cpu`,
        fieldPath: '.memoryMiB',
      },
    ],
  });
export type Resources = z.output<typeof resourcesSchema>;

export const networkSchema = z
  .object({
    egress: egressModeSchema.default(DEFAULT_EGRESS).meta({
      description:
        'Outbound network access from the guest: "all" (the internet, needed to install packages; never the node, other VMs or private, shared or link-local ranges unless the cluster admin allow-lists them) or "none" (no network at all).',
    }),
    allowDomains: z
      .array(
        z.string().max(253).regex(ALLOW_DOMAIN_PATTERN, {
          error:
            'use a lowercase domain name such as "example.org", or "*.example.net" for every name below it',
        }),
      )
      .max(MAX_ALLOW_DOMAINS)
      .optional()
      .meta({
        description:
          'With egress "all": the only domain names the guest may resolve and connect to ("example.org", "*.example.net" for names below it); other names are refused at once. Unset or empty: the whole internet.',
      }),
  })
  .default({ egress: DEFAULT_EGRESS })
  .meta({
    description: 'Guest networking. Immutable.',
    'x-kubernetes-validations': [
      ...immutable('spec.network')['x-kubernetes-validations'],
      {
        rule: "!has(self.allowDomains) || size(self.allowDomains) == 0 || self.egress == 'all'",
        message: 'allowDomains needs egress "all" (with egress "none" the guest reaches nothing)',
        fieldPath: '.allowDomains',
      },
    ],
  });
export type Network = z.output<typeof networkSchema>;

/** What happens at the idle timeout: the environment is deleted, or its VM suspended (ADR 0014). */
export const IDLE_ACTIONS = ['Delete', 'Suspend'] as const;
export const idleActionSchema = z.enum(IDLE_ACTIONS);
export type IdleAction = z.output<typeof idleActionSchema>;
export const DEFAULT_IDLE_ACTION: IdleAction = 'Delete';
export const SUSPEND_NEEDS_MAX_LIFETIME =
  'idleAction Suspend needs maxLifetime: a suspended environment is deleted at its lifetime';

export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** An OCI image reference as the API takes it (the node parses and normalizes it). */
export const imageSchema = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/, {
    error: 'spec.image is an OCI image reference, e.g. registry.example.com/team/python:3.12',
  })
  .optional()
  .meta({
    description:
      "OCI image (registry/repository:tag or @sha256:digest) to run instead of the runtime's built-in image. " +
      "Its registry must be on the cluster's image allow-list (chart images.allow); it needs /bin/sh and the " +
      "runtime's interpreter (docs/custom-images.md). Pulled and cached by manifest digest on the node. Immutable.",
  });

export const environmentSpecSchema = z
  .object({
    runtime: runtimeSchema.meta({
      description: 'Language runtime of the environment: python, node or shell. Immutable.',
      ...immutable('spec.runtime'),
    }),
    displayName: z
      .string()
      .max(253)
      .optional()
      .meta({ description: 'Human-friendly name (the MCP `name` argument).' }),
    image: imageSchema,
    template: z
      .string()
      .max(253)
      .regex(DNS_SUBDOMAIN, { error: 'must be a WaggleTemplate name (a DNS subdomain)' })
      .optional()
      .meta({
        description:
          "The WaggleTemplate the environment was made from (create_environment's template). Its image pull " +
          "secret serves spec.image when spec.image is the template's image. Immutable.",
      }),
    resources: resourcesSchema,
    idleTimeout: durationSchema({
      ...DURATION_LIMITS.idleTimeout,
      description:
        'After this long without activity (e.g. "30m") the environment is deleted, or suspended (see idleAction).',
    }).default(DURATION_LIMITS.idleTimeout.default),
    idleAction: idleActionSchema.default(DEFAULT_IDLE_ACTION).meta({
      description:
        'What happens at the idle timeout: "Delete" the environment, or "Suspend" its VM (its memory is saved to disk on its node and the next use resumes it where it stopped). Suspend needs maxLifetime.',
    }),
    maxLifetime: durationSchema({
      ...DURATION_LIMITS.maxLifetime,
      description: 'Delete the environment this long after creation, however active (optional).',
    }).optional(),
    network: networkSchema,
    nodeName: z
      .string()
      .max(253)
      .regex(DNS_SUBDOMAIN, { error: 'must be a WaggleNode name (a DNS subdomain)' })
      .optional()
      .meta({ description: 'Pin the environment to this WaggleNode. Immutable.' }),
  })
  .meta({
    description: 'Desired state of a WaggleEnvironment.',
    'x-kubernetes-validations': [
      {
        rule: 'has(self.image) == has(oldSelf.image) && (!has(self.image) || self.image == oldSelf.image)',
        message: 'spec.image is immutable; create a new environment instead',
      },
      {
        rule: 'has(self.template) == has(oldSelf.template) && (!has(self.template) || self.template == oldSelf.template)',
        message: 'spec.template is immutable; create a new environment instead',
      },
      {
        rule: 'has(self.nodeName) == has(oldSelf.nodeName) && (!has(self.nodeName) || self.nodeName == oldSelf.nodeName)',
        message: 'spec.nodeName is immutable; create a new environment instead',
      },
      {
        rule: '!has(self.maxLifetime) || duration(self.idleTimeout) <= duration(self.maxLifetime)',
        message: 'idleTimeout must not be longer than maxLifetime',
        fieldPath: '.idleTimeout',
      },
      {
        rule: "self.idleAction != 'Suspend' || has(self.maxLifetime)",
        message: SUSPEND_NEEDS_MAX_LIFETIME,
        fieldPath: '.idleAction',
      },
    ],
  });
export type WaggleEnvironmentSpec = z.output<typeof environmentSpecSchema>;
export type WaggleEnvironmentSpecInput = z.input<typeof environmentSpecSchema>;

export const ENVIRONMENT_PHASES = [
  'Pending',
  'Scheduled',
  'Booting',
  'Running',
  'Suspended',
  'Terminating',
  'Failed',
] as const;
export const environmentPhaseSchema = z.enum(ENVIRONMENT_PHASES);
export type EnvironmentPhase = z.output<typeof environmentPhaseSchema>;

/** Condition types on a WaggleEnvironment. */
export const EnvironmentConditionType = {
  Scheduled: 'Scheduled',
  Ready: 'Ready',
  /**
   * False while the node running the VM has not heartbeated within the stale window (judged by
   * the operator's clock); the VM is kept, and the condition clears when heartbeats return.
   */
  NodeReachable: 'NodeReachable',
  /**
   * With spec.image: False while the node resolves, pulls, unpacks and prepares the image (the
   * message names the step), True once the node has it (the message gives the digest and whether
   * it was cached). Absent without spec.image.
   */
  ImageReady: 'ImageReady',
} as const;

/** Stable `reason` strings; clients may switch on them. */
export const EnvironmentReason = {
  /** Scheduled=True: a node was picked. */
  Scheduled: 'Scheduled',
  /** Scheduled=False: no WaggleNode fits; the message says why. Retried when capacity frees. */
  Unschedulable: 'Unschedulable',
  /** Ready=False: the VM is being created or is booting. */
  Booting: 'Booting',
  /** Ready=True: the guest answers. */
  Running: 'Running',
  /**
   * Ready=False and NodeReachable=False: the node stopped heartbeating; the VM is kept and the
   * environment recovers when heartbeats return (within the operator's node-lost grace).
   */
  NodeUnreachable: 'NodeUnreachable',
  /** NodeReachable=True: the node heartbeats (again). */
  NodeReachable: 'NodeReachable',
  /**
   * Ready=False, terminal: the node stayed unreachable longer than the node-lost grace
   * (WAGGLE_NODE_LOST_GRACE); its VM is destroyed when the node answers again.
   */
  NodeLost: 'NodeLost',
  /** Ready=False, terminal: the VM failed to start or disappeared. */
  VMFailed: 'VMFailed',
  /** ImageReady=False: the node is pulling spec.image; the message names the step. */
  PullingImage: 'PullingImage',
  /** ImageReady=True: the node has spec.image (pulled now or cached before). */
  ImagePulled: 'ImagePulled',
  /**
   * ImageReady=False and Ready=False, terminal: spec.image cannot run (not allowed, not found,
   * unauthorized, too large, missing /bin/sh or the interpreter); the message says what to fix.
   */
  ImagePullFailed: 'ImagePullFailed',
  /** Ready=False, terminal: the VM's QEMU exited while it ran (killed, crashed, out of memory). */
  VMExited: 'VMExited',
  /**
   * Ready=False: idle with idleAction Suspend — the VM's state is saved on its node and no guest
   * runs (phase Suspended; while phase is still Running, the suspension is in progress). The next
   * use resumes it.
   */
  Suspended: 'Suspended',
  /** Ready=False: the idle timeout or maximum lifetime was reached; deletion follows. */
  Expired: 'Expired',
  /** Ready=False: deletion is in progress. */
  Terminating: 'Terminating',
} as const;
export type EnvironmentReason = (typeof EnvironmentReason)[keyof typeof EnvironmentReason];

/** How a VM was made (`status.createdFrom`): booted, restored from a snapshot, or taken from a pool. */
export const VM_ORIGINS = ['cold', 'restored', 'warm'] as const;
export type VmOrigin = (typeof VM_ORIGINS)[number];

export const environmentStatusSchema = z
  .object({
    phase: environmentPhaseSchema.optional().meta({ description: 'Coarse lifecycle phase.' }),
    nodeName: z.string().optional().meta({ description: 'The WaggleNode running the VM.' }),
    vmId: z.string().optional().meta({ description: 'Identifier of the VM on its node.' }),
    pool: z
      .string()
      .max(317)
      .optional()
      .meta({ description: 'The WagglePool ("<namespace>/<name>") whose template the spec matches.' }),
    imageDigest: z
      .string()
      .regex(/^sha256:[a-f0-9]{64}$/)
      .optional()
      .meta({ description: 'The manifest digest of spec.image the VM runs (linux/amd64).' }),
    createdFrom: z.enum(VM_ORIGINS).optional().meta({
      description: 'How the VM was made: cold (booted), restored (from a snapshot) or warm (from a pool).',
    }),
    startedAt: timestamp().optional().meta({ description: 'When the guest first became ready.' }),
    lastActivityTime: timestamp()
      .optional()
      .meta({ description: 'Last recorded use (execute, files); drives the idle timeout.' }),
    expiresAt: timestamp()
      .optional()
      .meta({ description: 'When the environment will be deleted unless used again.' }),
    suspendedAt: timestamp()
      .optional()
      .meta({ description: 'When the VM was last suspended (idleAction Suspend).' }),
    resumedAt: timestamp().optional().meta({ description: 'When the VM was last resumed.' }),
    lastResumeMs: z
      .int()
      .min(0)
      .optional()
      .meta({ format: 'int64', description: 'How long the last resume took on the node, in ms.' }),
    observedGeneration: z
      .int()
      .min(0)
      .optional()
      .meta({ format: 'int64', description: 'The .metadata.generation this status describes.' }),
    message: z.string().max(4096).optional().meta({ description: 'Human-readable summary of the state.' }),
    conditions: conditionsSchema(),
  })
  .meta({ description: 'Observed state of a WaggleEnvironment, written by the operator.' });
export type WaggleEnvironmentStatus = z.output<typeof environmentStatusSchema>;

export const waggleEnvironmentSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(ENVIRONMENT_KIND),
    metadata: objectMetaSchema,
    spec: environmentSpecSchema,
    status: environmentStatusSchema.optional(),
  })
  .meta({
    description: 'A disposable, isolated coding environment backed by a microVM.',
    'x-kubernetes-validations': [
      {
        rule: 'size(self.metadata.name) <= 63',
        message: 'metadata.name must be at most 63 characters (it is used as a label value)',
      },
    ],
  });
export type WaggleEnvironment = z.output<typeof waggleEnvironmentSchema>;
export type WaggleEnvironmentInput = z.input<typeof waggleEnvironmentSchema>;
