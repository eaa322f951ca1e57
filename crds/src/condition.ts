import { z } from 'zod';

/** RFC 3339 timestamp as Kubernetes serializes `metav1.Time` (e.g. `2026-11-23T10:00:00Z`). */
export const timestamp = () => z.string().meta({ format: 'date-time' });

export const conditionStatus = z.enum(['True', 'False', 'Unknown']);

/** The standard `metav1.Condition` shape. */
export const conditionSchema = z.object({
  type: z
    .string()
    .max(316)
    .regex(
      /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/,
    )
    .meta({ description: 'Type of condition in CamelCase.' }),
  status: conditionStatus.meta({ description: 'Status of the condition: True, False or Unknown.' }),
  observedGeneration: z
    .int()
    .min(0)
    .optional()
    .meta({ format: 'int64', description: 'The .metadata.generation the condition was set for.' }),
  lastTransitionTime: timestamp().meta({ description: 'When the condition last changed status.' }),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
    .meta({ description: 'Programmatic, stable identifier of the reason for the last transition.' }),
  message: z.string().max(32768).meta({ description: 'Human-readable details about the transition.' }),
});
export type Condition = z.output<typeof conditionSchema>;
export type ConditionStatus = z.output<typeof conditionStatus>;

/** A list of conditions keyed by `type`, as Kubernetes list-map. */
export const conditionsSchema = () =>
  z
    .array(conditionSchema)
    .max(16)
    .optional()
    .meta({
      description: 'Standard conditions, keyed by type.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
    });

/** Minimal `ObjectMeta` as the API returns it; unknown fields are kept. */
export const objectMetaSchema = z.looseObject({
  name: z.string().optional(),
  generateName: z.string().optional(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.int().optional(),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  finalizers: z.array(z.string()).optional(),
});
export type ObjectMeta = z.output<typeof objectMetaSchema>;
