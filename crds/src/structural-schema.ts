import { z } from 'zod';

/** An OpenAPI v3 schema object as accepted by `apiextensions.k8s.io/v1`. */
export type JSONSchema = { [key: string]: unknown };

const SAFE_INT_BOUND = Number.MAX_SAFE_INTEGER;

/**
 * Converts a zod schema into a Kubernetes structural schema:
 * - zod renders OpenAPI 3.0 JSON Schema (input side, so defaulted fields are optional);
 * - `x-kubernetes-*` keys and `format` come from `.meta()` on the zod schema;
 * - keys Kubernetes rejects or that add nothing are removed: `$schema`, `additionalProperties:false`
 *   (the apiserver prunes unknown fields), zod's RFC 3339 regex (not RE2-compatible; `format:
 *   date-time` already validates), and the ±2^53 bounds zod puts on every integer.
 */
export function toStructuralSchema(schema: z.ZodType): JSONSchema {
  const raw = z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'throw' });
  return clean(raw as JSONSchema, '');
}

function clean(node: JSONSchema, path: string): JSONSchema {
  const out: JSONSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === '$schema') continue;
    if (key === 'additionalProperties' && value === false) continue;
    if (key === 'pattern' && node.format === 'date-time') continue;
    if ((key === 'minimum' && value === -SAFE_INT_BOUND) || (key === 'maximum' && value === SAFE_INT_BOUND))
      continue;
    if (key === 'properties') {
      const props: JSONSchema = {};
      for (const [name, child] of Object.entries(value as Record<string, JSONSchema>)) {
        props[name] = clean(child, `${path}.${name}`);
      }
      out.properties = props;
      continue;
    }
    if (key === 'items') {
      out.items = clean(value as JSONSchema, `${path}[]`);
      continue;
    }
    if (key === 'anyOf' || key === 'oneOf' || key === 'allOf' || key === '$ref' || key === 'not') {
      throw new Error(`${path || '<root>'}: "${key}" is not allowed in a Kubernetes structural schema`);
    }
    out[key] = value;
  }
  if (typeof out.type !== 'string') {
    throw new Error(`${path || '<root>'}: every node of a structural schema needs a "type"`);
  }
  return out;
}
