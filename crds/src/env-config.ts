import type { z } from 'zod';

/**
 * A configuration variable that was renamed: the old name is still read (as `current`) for one
 * release, and the component logs a warning at start (logRenamedVariables).
 */
export interface RenamedVariable {
  old: string;
  current: string;
}

/**
 * Parses a component's configuration from environment variables with its zod schema. Empty
 * variables count as unset; a `renamed` variable set only under its old name is read as its
 * current name. On failure, throws `makeError` with one line per bad variable —
 * `NAME="value": what is wrong` — so a misconfigured pod says exactly what to fix.
 */
export function parseEnvConfig<S extends z.ZodType>(
  schema: S,
  env: NodeJS.ProcessEnv,
  component: string,
  makeError: (message: string) => Error = (m) => new Error(m),
  renamed: readonly RenamedVariable[] = [],
): z.output<S> {
  const clean = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const readAs = new Map<string, string>();
  for (const r of renamed) {
    if (clean[r.old] === undefined || clean[r.current] !== undefined) continue;
    clean[r.current] = clean[r.old];
    readAs.set(r.current, r.old);
  }
  const r = schema.safeParse(clean);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const name = String(i.path[0]);
    const old = readAs.get(name);
    return `  ${i.path.join('.')}=${JSON.stringify(clean[name])}${old ? ` (set as ${old})` : ''}: ${i.message}`;
  });
  throw makeError(`invalid ${component} configuration:\n${lines.join('\n')}`);
}

/** The renamed variables `env` still sets under their old names. */
export function renamedVariablesSet(
  env: NodeJS.ProcessEnv,
  renamed: readonly RenamedVariable[],
): RenamedVariable[] {
  return renamed.filter((r) => env[r.old] !== undefined && env[r.old] !== '');
}

/** Warns once per renamed variable still set under its old name (call once the logger exists). */
export function logRenamedVariables(
  log: { warn(obj: object, msg: string): void },
  env: NodeJS.ProcessEnv,
  renamed: readonly RenamedVariable[],
): void {
  for (const r of renamedVariablesSet(env, renamed)) {
    log.warn(
      { variable: r.old, renamedTo: r.current, ignored: env[r.current] ? true : undefined },
      'configuration variable is deprecated: rename it (the old name stops working in the next release)',
    );
  }
}
