import { z } from 'zod';
import { conditionsSchema, objectMetaSchema } from './condition.ts';
import { imageSchema, networkSchema, resourcesSchema } from './environment.ts';
import { API_VERSION } from './group.ts';
import { runtimeSchema } from './vocabulary.ts';

// WagglePool: a warm pool of pre-booted microVMs of one template (docs/adr/0014, "Warm pools").
// The operator spreads `spec.replicas` over Ready nodes and tells each node its share
// (SetWarmPools); an environment whose spec equals the template is created from a warm VM.

export const POOL_KIND = 'WagglePool';
export const POOL_PLURAL = 'wagglepools';
export const POOL_SINGULAR = 'wagglepool';
export const POOL_SHORT_NAMES = ['wpool'];

/** The most warm VMs one pool may ask for (across all nodes). */
export const MAX_POOL_REPLICAS = 1000;

/** Label key of `status.selector` (the scale subresource needs a selector; warm VMs are not pods). */
export const POOL_LABEL = 'waggle.dev/pool';

type Rule = { rule: string };

/** The environment's schema without its immutability rule: a pool's template may change. */
export function changeable<T extends z.ZodType>(schema: T, description: string): T {
  const { 'x-kubernetes-validations': validations, ...meta } = schema.meta() ?? {};
  const rules = ((validations ?? []) as Rule[]).filter((r) => r.rule !== 'self == oldSelf');
  // No empty list: the apiserver drops it, and Helm's server-side apply of the CRD then
  // conflicts with the copy applied before (the field belongs to nobody but differs).
  return schema.meta({
    ...meta,
    description,
    ...(rules.length ? { 'x-kubernetes-validations': rules } : {}),
  });
}

/**
 * What a pool's VMs are: the fields of a WaggleEnvironment spec that make a VM (same schemas and
 * defaults). An environment whose runtime, resources and network equal these is created from the
 * pool. Unlike an environment's, the template may change: the pool's VMs are replaced.
 */
export const poolTemplateSchema = z
  .object({
    runtime: runtimeSchema.meta({ description: 'Language runtime of the warm VMs: python, node or shell.' }),
    resources: changeable(resourcesSchema, "Resources of the warm VMs (as an environment's)."),
    network: changeable(networkSchema, "Guest networking of the warm VMs (as an environment's)."),
    image: changeable(
      imageSchema,
      "OCI image the warm VMs run instead of the runtime's built-in one (a template's image, pulled anonymously; " +
        'only nodes that run OCI images hold them). Environments with this image get them.',
    ),
  })
  .meta({ description: 'The VMs to keep warm: what an environment must ask for to get one.' });
export type PoolTemplate = z.output<typeof poolTemplateSchema>;

export const poolSpecSchema = z
  .object({
    template: poolTemplateSchema,
    replicas: z
      .int()
      .min(0)
      .max(MAX_POOL_REPLICAS)
      .default(1)
      .meta({ description: 'Ready warm VMs to keep, over all nodes (the scale subresource sets it).' }),
  })
  .meta({ description: 'Desired state of a WagglePool.' });
export type WagglePoolSpec = z.output<typeof poolSpecSchema>;

const count = (description: string) => z.int().min(0).meta({ description });

export const poolNodeStatusSchema = z
  .object({
    name: z.string().max(253).meta({ description: 'The WaggleNode.' }),
    replicas: count('Warm VMs the operator asked this node to keep.'),
    ready: count('Ready warm VMs of the current template the node reports.'),
    booting: count('Warm VMs the node is booting.'),
  })
  .meta({ description: "A node's share of the pool." });
export type PoolNodeStatus = z.output<typeof poolNodeStatusSchema>;

/** Condition types on a WagglePool. */
export const PoolConditionType = { Ready: 'Ready' } as const;

/** Stable `reason` strings on a WagglePool's conditions. */
export const PoolReason = {
  /** Ready=True: the nodes report as many ready warm VMs as spec.replicas. */
  Filled: 'Filled',
  /** Ready=False: warm VMs are being booted. */
  Filling: 'Filling',
  /** Ready=False: the nodes have no room (or no runtime) for all replicas; the message says how many fit. */
  InsufficientCapacity: 'InsufficientCapacity',
} as const;

export const poolStatusSchema = z
  .object({
    replicas: count('Warm VMs the nodes hold for the pool (ready and booting).').optional(),
    readyReplicas: count('Ready warm VMs of the current template.').optional(),
    bootingReplicas: count('Warm VMs being booted.').optional(),
    nodes: z
      .array(poolNodeStatusSchema)
      .max(1000)
      .optional()
      .meta({
        description: 'Per node: the assigned share and what the node reports.',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
      }),
    templateHash: z
      .string()
      .max(64)
      .optional()
      .meta({ description: 'Hash of spec.template; changes when the template does.' }),
    selector: z
      .string()
      .max(1024)
      .optional()
      .meta({ description: 'Label selector of the scale subresource (warm VMs are not pods).' }),
    observedGeneration: z
      .int()
      .min(0)
      .optional()
      .meta({ format: 'int64', description: 'The .metadata.generation this status describes.' }),
    conditions: conditionsSchema(),
  })
  .meta({ description: 'Observed state of a WagglePool, written by the operator.' });
export type WagglePoolStatus = z.output<typeof poolStatusSchema>;

export const wagglePoolSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(POOL_KIND),
    metadata: objectMetaSchema,
    spec: poolSpecSchema,
    status: poolStatusSchema.optional(),
  })
  .meta({
    description: 'A warm pool: pre-booted microVMs of one template, handed to matching new environments.',
    'x-kubernetes-validations': [
      {
        rule: 'size(self.metadata.name) <= 63',
        message: 'metadata.name must be at most 63 characters (it is used as a label value)',
      },
    ],
  });
export type WagglePool = z.output<typeof wagglePoolSchema>;
export type WagglePoolInput = z.input<typeof wagglePoolSchema>;

/** `<namespace>/<name>`: how node-agents and environments name a pool. */
export const poolRef = (pool: { metadata: { namespace?: string; name?: string } }): string =>
  `${pool.metadata.namespace}/${pool.metadata.name}`;
