import { z } from 'zod';
import { conditionsSchema, objectMetaSchema } from './condition.ts';
import { durationSchema } from './duration.ts';
import {
  DNS_SUBDOMAIN,
  DURATION_LIMITS,
  imageSchema,
  networkSchema,
  resourcesSchema,
} from './environment.ts';
import { API_VERSION } from './group.ts';
import { changeable } from './pool.ts';
import { runtimeSchema } from './vocabulary.ts';

// WaggleTemplate: an admin-made recipe for environments (runtime, image, resources, network, idle
// timeout) that callers pick by name: create_environment(template: "data-science"),
// list_templates. Cluster-scoped: admins decide what exists, every namespace may use it. Its
// image pull secret lives in Waggle's own namespace and serves only the template's image.

export const TEMPLATE_KIND = 'WaggleTemplate';
export const TEMPLATE_PLURAL = 'waggletemplates';
export const TEMPLATE_SINGULAR = 'waggletemplate';
export const TEMPLATE_SHORT_NAMES = ['wtpl'];

export const templateSpecSchema = z
  .object({
    description: z
      .string()
      .max(1024)
      .optional()
      .meta({ description: 'What the template is for; list_templates shows it to agents.' }),
    runtime: runtimeSchema.meta({ description: 'Language runtime: python, node or shell.' }),
    image: imageSchema.meta({
      description:
        "OCI image the environments run instead of the runtime's built-in image (docs/custom-images.md); " +
        "its registry must be on the cluster's image allow-list (chart nodeAgent.images.allow).",
    }),
    imagePullSecret: z
      .object({
        name: z
          .string()
          .max(253)
          .regex(DNS_SUBDOMAIN, { error: 'must be a Secret name (a DNS subdomain)' })
          .meta({ description: 'Name of the Secret.' }),
      })
      .optional()
      .meta({
        description:
          "A Secret of type kubernetes.io/dockerconfigjson in the namespace Waggle runs in, with the registry's " +
          'credentials for spec.image. Used for this image only; callers never see it.',
      }),
    resources: changeable(resourcesSchema, 'Resources of the environments (as an environment’s).'),
    network: changeable(networkSchema, 'Guest networking of the environments (as an environment’s).'),
    idleTimeout: durationSchema({
      ...DURATION_LIMITS.idleTimeout,
      description: 'Idle timeout of the environments (e.g. "30m"); unset: the gateway’s default.',
    }).optional(),
  })
  .meta({
    description: 'Desired state of a WaggleTemplate.',
    'x-kubernetes-validations': [
      { rule: '!has(self.imagePullSecret) || has(self.image)', message: 'imagePullSecret needs image' },
    ],
  });
export type WaggleTemplateSpec = z.output<typeof templateSpecSchema>;

/** Whether one node has a template's image. */
export const TEMPLATE_NODE_STATES = ['Pulling', 'Ready', 'Failed'] as const;

export const templateNodeStatusSchema = z
  .object({
    name: z.string().max(253).meta({ description: 'The WaggleNode.' }),
    state: z.enum(TEMPLATE_NODE_STATES).meta({
      description:
        'Pulling: the node is pulling the image; Ready: it has it (environments start without a pull); ' +
        'Failed: it cannot pull or run it (the message says why; tried again later).',
    }),
    digest: z
      .string()
      .regex(/^sha256:[a-f0-9]{64}$/)
      .optional()
      .meta({ description: 'The linux/amd64 manifest digest the node has (state Ready).' }),
    message: z.string().max(2048).meta({ description: 'The pull step, the digest, or what went wrong.' }),
    lastCheckTime: z
      .string()
      .optional()
      .meta({ format: 'date-time', description: 'When the operator last asked the node for the image.' }),
  })
  .meta({ description: "A node's copy of the template's image." });
export type TemplateNodeStatus = z.output<typeof templateNodeStatusSchema>;

/** Condition types on a WaggleTemplate. */
export const TemplateConditionType = { Ready: 'Ready' } as const;

/** Stable `reason` strings on a WaggleTemplate's conditions. */
export const TemplateReason = {
  /** Ready=True: every node that runs images has the template's image. */
  ImagePulled: 'ImagePulled',
  /** Ready=True: the template uses the runtime's built-in image (nothing to pull). */
  BuiltInImage: 'BuiltInImage',
  /** Ready=False: some nodes are still pulling the image. */
  Pulling: 'Pulling',
  /** Ready=False: some node could not pull or run the image; the message says which and why. */
  PullFailed: 'PullFailed',
  /** Ready=False: no Ready node runs OCI images (their allow-list is empty, or none is Ready). */
  NoImageNodes: 'NoImageNodes',
} as const;

export const templateStatusSchema = z
  .object({
    nodes: z
      .array(templateNodeStatusSchema)
      .max(1000)
      .optional()
      .meta({
        description:
          'Per Ready node that runs OCI images: whether it has the image (pre-pulled by the operator).',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
      }),
    ready: z
      .string()
      .max(32)
      .optional()
      .meta({ description: 'Nodes that have the image, of the nodes that run images ("2/3").' }),
    observedGeneration: z
      .int()
      .min(0)
      .optional()
      .meta({ format: 'int64', description: 'The .metadata.generation this status describes.' }),
    conditions: conditionsSchema(),
  })
  .meta({ description: 'Observed state of a WaggleTemplate, written by the operator.' });
export type WaggleTemplateStatus = z.output<typeof templateStatusSchema>;

export const waggleTemplateSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(TEMPLATE_KIND),
    metadata: objectMetaSchema,
    spec: templateSpecSchema,
    status: templateStatusSchema.optional(),
  })
  .meta({ description: 'A named recipe for Waggle environments that callers pick by name.' });
export type WaggleTemplate = z.output<typeof waggleTemplateSchema>;
