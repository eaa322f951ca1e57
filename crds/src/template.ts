import { z } from 'zod';
import { objectMetaSchema } from './condition.ts';
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

export const waggleTemplateSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(TEMPLATE_KIND),
    metadata: objectMetaSchema,
    spec: templateSpecSchema,
  })
  .meta({ description: 'A named recipe for Waggle environments that callers pick by name.' });
export type WaggleTemplate = z.output<typeof waggleTemplateSchema>;
