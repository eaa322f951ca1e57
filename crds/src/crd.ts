import {
  ENVIRONMENT_KIND,
  ENVIRONMENT_PLURAL,
  ENVIRONMENT_SHORT_NAMES,
  ENVIRONMENT_SINGULAR,
  waggleEnvironmentSchema,
} from './environment.ts';
import { GROUP, VERSION } from './group.ts';
import { NODE_KIND, NODE_PLURAL, NODE_SHORT_NAMES, NODE_SINGULAR, waggleNodeSchema } from './node.ts';
import { POOL_KIND, POOL_PLURAL, POOL_SHORT_NAMES, POOL_SINGULAR, wagglePoolSchema } from './pool.ts';
import { type JSONSchema, toStructuralSchema } from './structural-schema.ts';
import {
  TEMPLATE_KIND,
  TEMPLATE_PLURAL,
  TEMPLATE_SHORT_NAMES,
  TEMPLATE_SINGULAR,
  waggleTemplateSchema,
} from './template.ts';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    scope: 'Namespaced' | 'Cluster';
    versions: Array<{
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: JSONSchema };
      subresources: { status: Record<string, never>; scale?: ScaleSubresource };
      additionalPrinterColumns: PrinterColumn[];
    }>;
  };
}

/** The scale subresource (`kubectl scale`, HorizontalPodAutoscaler). */
export interface ScaleSubresource {
  specReplicasPath: string;
  statusReplicasPath: string;
  labelSelectorPath?: string;
}

const AGE: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

/** Printer columns of `kubectl get waggleenvironments`. */
export const ENVIRONMENT_COLUMNS: PrinterColumn[] = [
  { name: 'Runtime', type: 'string', jsonPath: '.spec.runtime', description: 'Language runtime.' },
  { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Lifecycle phase.' },
  { name: 'Node', type: 'string', jsonPath: '.status.nodeName', description: 'WaggleNode running the VM.' },
  // A string, not a date: kubectl renders date columns as time *since*, and "<invalid>" for the future.
  {
    name: 'Expires',
    type: 'string',
    jsonPath: '.status.expiresAt',
    description: 'When it will be deleted (UTC).',
  },
  AGE,
  {
    name: 'Reason',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
    description: 'Reason of the Ready condition.',
    priority: 1,
  },
  {
    name: 'Message',
    type: 'string',
    jsonPath: '.status.message',
    description: 'What is happening, e.g. why it is still Pending.',
    priority: 1,
  },
];

/** Printer columns of `kubectl get wagglenodes`. */
export const NODE_COLUMNS: PrinterColumn[] = [
  {
    name: 'Ready',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Ready")].status',
    description: 'Whether the node-agent heartbeats and can run VMs.',
  },
  { name: 'Accel', type: 'string', jsonPath: '.status.accelerator', description: 'kvm or tcg.' },
  { name: 'VMs', type: 'string', jsonPath: '.status.vmUsage', description: 'Allocated/capacity VMs.' },
  AGE,
  { name: 'Endpoint', type: 'string', jsonPath: '.status.endpoint', priority: 1 },
];

/** Printer columns of `kubectl get wagglepools`. */
export const POOL_COLUMNS: PrinterColumn[] = [
  { name: 'Runtime', type: 'string', jsonPath: '.spec.template.runtime', description: 'Language runtime.' },
  { name: 'Desired', type: 'integer', jsonPath: '.spec.replicas', description: 'Warm VMs to keep.' },
  { name: 'Ready', type: 'integer', jsonPath: '.status.readyReplicas', description: 'Ready warm VMs.' },
  { name: 'Booting', type: 'integer', jsonPath: '.status.bootingReplicas', description: 'Warm VMs booting.' },
  AGE,
  {
    name: 'Template',
    type: 'string',
    jsonPath: '.status.templateHash',
    description: 'Hash of spec.template.',
    priority: 1,
  },
];

/** Printer columns of `kubectl get waggletemplates`. */
export const TEMPLATE_COLUMNS: PrinterColumn[] = [
  { name: 'Runtime', type: 'string', jsonPath: '.spec.runtime', description: 'Language runtime.' },
  { name: 'Image', type: 'string', jsonPath: '.spec.image', description: 'OCI image (empty: built-in).' },
  {
    name: 'Ready',
    type: 'string',
    jsonPath: '.status.ready',
    description: 'Nodes that have the image, of the nodes that run images.',
  },
  AGE,
  { name: 'Description', type: 'string', jsonPath: '.spec.description', priority: 1 },
];

const LABELS = { 'app.kubernetes.io/part-of': 'waggle' };

function crd(opts: {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  scope: 'Namespaced' | 'Cluster';
  schema: JSONSchema;
  columns: PrinterColumn[];
  scale?: ScaleSubresource;
}): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${opts.plural}.${GROUP}`, labels: LABELS },
    spec: {
      group: GROUP,
      names: {
        kind: opts.kind,
        listKind: `${opts.kind}List`,
        plural: opts.plural,
        singular: opts.singular,
        shortNames: opts.shortNames,
        categories: ['waggle'],
      },
      scope: opts.scope,
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: opts.schema },
          subresources: opts.scale ? { status: {}, scale: opts.scale } : { status: {} },
          additionalPrinterColumns: opts.columns,
        },
      ],
    },
  };
}

/**
 * Gives the object-level `apiVersion`, `kind` and `metadata` the forms Kubernetes expects (the
 * apiserver owns them: it validates metadata itself and a CRD may not constrain it further here).
 */
function withStandardObjectFields(schema: JSONSchema): JSONSchema {
  const properties = {
    ...(schema.properties as Record<string, JSONSchema>),
    apiVersion: { type: 'string', description: 'APIVersion defines the versioned schema of this object.' },
    kind: { type: 'string', description: 'Kind is a string value representing the REST resource.' },
    metadata: { type: 'object' },
  };
  const required = (schema.required as string[]).filter(
    (f) => !['apiVersion', 'kind', 'metadata'].includes(f),
  );
  const { required: _, ...rest } = schema;
  return required.length ? { ...rest, properties, required } : { ...rest, properties };
}

export function environmentCRD(): CustomResourceDefinition {
  return crd({
    kind: ENVIRONMENT_KIND,
    plural: ENVIRONMENT_PLURAL,
    singular: ENVIRONMENT_SINGULAR,
    shortNames: ENVIRONMENT_SHORT_NAMES,
    scope: 'Namespaced',
    schema: withStandardObjectFields(toStructuralSchema(waggleEnvironmentSchema)),
    columns: ENVIRONMENT_COLUMNS,
  });
}

export function nodeCRD(): CustomResourceDefinition {
  return crd({
    kind: NODE_KIND,
    plural: NODE_PLURAL,
    singular: NODE_SINGULAR,
    shortNames: NODE_SHORT_NAMES,
    scope: 'Cluster',
    schema: withStandardObjectFields(toStructuralSchema(waggleNodeSchema)),
    columns: NODE_COLUMNS,
  });
}

export function poolCRD(): CustomResourceDefinition {
  return crd({
    kind: POOL_KIND,
    plural: POOL_PLURAL,
    singular: POOL_SINGULAR,
    shortNames: POOL_SHORT_NAMES,
    scope: 'Namespaced',
    schema: withStandardObjectFields(toStructuralSchema(wagglePoolSchema)),
    columns: POOL_COLUMNS,
    scale: {
      specReplicasPath: '.spec.replicas',
      statusReplicasPath: '.status.replicas',
      labelSelectorPath: '.status.selector',
    },
  });
}

export function templateCRD(): CustomResourceDefinition {
  return crd({
    kind: TEMPLATE_KIND,
    plural: TEMPLATE_PLURAL,
    singular: TEMPLATE_SINGULAR,
    shortNames: TEMPLATE_SHORT_NAMES,
    scope: 'Cluster',
    schema: withStandardObjectFields(toStructuralSchema(waggleTemplateSchema)),
    columns: TEMPLATE_COLUMNS,
  });
}

/** Every CRD Waggle ships, keyed by the file name it is written to. */
export function allCRDs(): Record<string, CustomResourceDefinition> {
  return {
    [`${GROUP}_${ENVIRONMENT_PLURAL}.yaml`]: environmentCRD(),
    [`${GROUP}_${NODE_PLURAL}.yaml`]: nodeCRD(),
    [`${GROUP}_${POOL_PLURAL}.yaml`]: poolCRD(),
    [`${GROUP}_${TEMPLATE_PLURAL}.yaml`]: templateCRD(),
  };
}
