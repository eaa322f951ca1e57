import { z } from 'zod';
import { conditionsSchema, objectMetaSchema, timestamp } from './condition.ts';
import { API_VERSION } from './group.ts';
import { acceleratorSchema, runtimeSchema } from './vocabulary.ts';

export const NODE_KIND = 'WaggleNode';
export const NODE_PLURAL = 'wagglenodes';
export const NODE_SINGULAR = 'wagglenode';
export const NODE_SHORT_NAMES = ['wnode'];

const count = (description: string) => z.int().min(0).meta({ description });

export const nodeResourcesSchema = z
  .object({
    vms: count('Number of microVMs.'),
    cpus: count('Virtual CPUs.'),
    memoryMiB: count('Guest memory in MiB.'),
  })
  .meta({ description: 'An amount of node resources.' });
export type NodeResources = z.output<typeof nodeResourcesSchema>;

export const nodePoolStatusSchema = z
  .object({
    name: z.string().max(317).meta({ description: 'The WagglePool, "<namespace>/<name>".' }),
    templateHash: z
      .string()
      .max(64)
      .optional()
      .meta({ description: "Hash of the pool's current template on this node (the node-agent's)." }),
    replicas: count('Warm VMs this node was asked to keep.').optional(),
    ready: count('Ready warm VMs of the current template.'),
    booting: count('Warm VMs being booted.'),
  })
  .meta({ description: 'The warm VMs one pool holds on this node.' });
export type NodePoolStatus = z.output<typeof nodePoolStatusSchema>;

export const nodeSpecSchema = z
  .object({
    unschedulable: z
      .boolean()
      .default(false)
      .meta({ description: 'Cordon: no new environments are scheduled here (running ones keep running).' }),
  })
  .meta({ description: 'Desired state of a WaggleNode, set by administrators.' });
export type WaggleNodeSpec = z.output<typeof nodeSpecSchema>;

/** Condition types on a WaggleNode. */
export const NodeConditionType = { Ready: 'Ready' } as const;

/** Stable `reason` strings on a WaggleNode's conditions. */
export const NodeReason = {
  /** Ready=True: the agent heartbeats and can run VMs. */
  AgentReady: 'AgentReady',
  /** Ready=False: no heartbeat within the grace period (set by the operator). */
  HeartbeatStale: 'HeartbeatStale',
  /** Ready=False: the agent runs but cannot start VMs (no hypervisor, no images). */
  NotReady: 'NotReady',
} as const;

export const nodeStatusSchema = z
  .object({
    endpoint: z
      .string()
      .max(2048)
      .optional()
      .meta({ description: 'URL of the node-agent API (ConnectRPC over HTTPS).' }),
    accelerator: acceleratorSchema
      .optional()
      .meta({ description: 'Hypervisor acceleration in use: kvm, or tcg (software emulation).' }),
    agentVersion: z.string().max(256).optional().meta({ description: 'Version of the node-agent.' }),
    capacity: nodeResourcesSchema.optional().meta({ description: 'What this node offers to environments.' }),
    allocated: nodeResourcesSchema.optional().meta({ description: 'What running environments use.' }),
    vmUsage: z
      .string()
      .max(64)
      .optional()
      .meta({ description: 'Display only: allocated/capacity VMs, e.g. "3/20".' }),
    runtimes: z.array(runtimeSchema).max(16).optional().meta({
      description: 'Runtimes whose images are ready on this node.',
      'x-kubernetes-list-type': 'set',
    }),
    ociImages: z.boolean().optional().meta({
      description: 'Whether the node runs OCI images (spec.image): its image allow-list is not empty.',
    }),
    pools: z
      .array(nodePoolStatusSchema)
      .max(256)
      .optional()
      .meta({
        description: 'Warm pools held on this node (SetWarmPools), as the node-agent reports them.',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
      }),
    lastHeartbeatTime: timestamp().optional().meta({ description: 'Last time the agent reported in.' }),
    conditions: conditionsSchema(),
  })
  .meta({ description: 'Observed state of a WaggleNode, written by its node-agent and the operator.' });
export type WaggleNodeStatus = z.output<typeof nodeStatusSchema>;

export const waggleNodeSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(NODE_KIND),
    metadata: objectMetaSchema,
    spec: nodeSpecSchema.default({ unschedulable: false }),
    status: nodeStatusSchema.optional(),
  })
  .meta({ description: 'A Kubernetes node that runs Waggle microVMs, registered by its node-agent.' });
export type WaggleNode = z.output<typeof waggleNodeSchema>;
export type WaggleNodeInput = z.input<typeof waggleNodeSchema>;
