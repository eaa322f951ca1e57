import type { z } from 'zod';

/**
 * Parses a component's configuration from environment variables with its zod schema. Empty
 * variables count as unset. On failure, throws `makeError` with one line per bad variable —
 * `NAME="value": what is wrong` — so a misconfigured pod says exactly what to fix.
 */
export function parseEnvConfig<S extends z.ZodType>(
  schema: S,
  env: NodeJS.ProcessEnv,
  component: string,
  makeError: (message: string) => Error = (m) => new Error(m),
): z.output<S> {
  const clean = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = schema.safeParse(clean);
  if (r.success) return r.data;
  const lines = r.error.issues.map(
    (i) => `  ${i.path.join('.')}=${JSON.stringify(clean[String(i.path[0])])}: ${i.message}`,
  );
  throw makeError(`invalid ${component} configuration:\n${lines.join('\n')}`);
}
