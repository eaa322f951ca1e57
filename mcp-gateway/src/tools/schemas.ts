import { RUNTIMES, type WaggleEnvironment } from '@waggle/crds';
import { z } from 'zod';
import { IDLE_ACTION_CHOICES, idleActionChoiceOf } from '../services/environment-spec.ts';
import type { ExecOutcome } from '../services/sandbox.ts';

/** Longest path a tool takes, in characters. */
export const MAX_PATH_CHARS = 4096;
/** Largest `code` execute takes, in characters. */
export const MAX_CODE_CHARS = 1_048_576;
/** Bytes a JSON string may take per character at worst (a control character is `\u001f`). */
const JSON_BYTES_PER_CHAR = 6;
/** The JSON-RPC envelope and a call's small, bounded arguments (ids, names, options, path). */
const ENVELOPE_BYTES = 64 * 1024 + MAX_PATH_CHARS * JSON_BYTES_PER_CHAR;

/**
 * The largest legal MCP request body, derived from the tool limits: a write_file of
 * `maxFileBytes` sent base64-encoded (the form for binary data; UTF-8 text escapes to at most
 * that much unless a third of it needs escaping), or an execute with the longest `code` at worst
 * JSON escaping, whichever is larger, plus the envelope. Anything larger is refused with 413
 * before it is parsed.
 */
export function maxCallBodyBytes(maxFileBytes: number): number {
  const writeFile = 4 * Math.ceil(maxFileBytes / 3);
  const execute = MAX_CODE_CHARS * JSON_BYTES_PER_CHAR;
  return Math.max(writeFile, execute) + ENVELOPE_BYTES;
}

export const environmentId = z
  .string({
    error: 'environment_id is required: the id create_environment returned (e.g. "env-k3x9q2m7p1a0b5c8d4e6")',
  })
  .min(1, { error: 'environment_id is empty; list_environments shows your environments' })
  .max(63, { error: 'environment_id is too long; ids look like "env-k3x9q2m7p1a0b5c8d4e6"' })
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, {
    error: 'environment_id has characters no id has; ids look like "env-k3x9q2m7p1a0b5c8d4e6"',
  })
  .describe('The id returned by create_environment.');

export const guestPath = z
  .string({ error: 'path is required' })
  .min(1, { error: 'path is empty; give a file path such as "data.csv" or "/home/sandbox/data.csv"' })
  .max(MAX_PATH_CHARS, { error: `path is longer than ${MAX_PATH_CHARS} characters` })
  .refine((p) => !p.includes('\0'), { error: 'path contains a NUL byte' });

export const guestPort = z
  .number({ error: 'port must be a number from 1 to 65535' })
  .int({ error: 'port must be a whole number from 1 to 65535' })
  .min(1, { error: 'port must be from 1 to 65535' })
  .max(65_535, { error: 'port must be from 1 to 65535' });

export const runtime = z.enum(RUNTIMES, {
  error: `runtime must be one of ${RUNTIMES.join(', ')}`,
});

export const environmentSummary = z.object({
  environment_id: z.string(),
  name: z.string(),
  runtime: z.string(),
  status: z
    .string()
    .describe(
      'pending, scheduled, booting, running, suspended (idle; the next call on it resumes it), terminating or failed',
    ),
  idle_action: z
    .enum(IDLE_ACTION_CHOICES)
    .describe('what happens after the idle timeout: delete, or suspend (the next call resumes it)'),
  created_at: z.string(),
  expires_at: z.string().optional(),
  node: z.string().optional(),
  message: z.string().optional(),
  template: z.string().optional().describe('the template it was made from'),
});

export function summarize(env: WaggleEnvironment): z.output<typeof environmentSummary> {
  return {
    environment_id: env.metadata.name as string,
    name: env.spec.displayName ?? (env.metadata.name as string),
    runtime: env.spec.runtime,
    ...(env.spec.template ? { template: env.spec.template } : {}),
    status: (env.status?.phase ?? 'Pending').toLowerCase(),
    idle_action: idleActionChoiceOf(env.spec.idleAction),
    created_at: env.metadata.creationTimestamp ?? '',
    ...(env.status?.expiresAt ? { expires_at: env.status.expiresAt } : {}),
    ...(env.status?.nodeName ? { node: env.status.nodeName } : {}),
    ...(env.status?.message ? { message: env.status.message } : {}),
  };
}

/** execute / install_packages result, with the original Waggle's field names first. */
export const execOutput = z.object({
  stdout: z.string(),
  stderr: z.string(),
  exit_code: z.number().int().nullable().describe('null when the process did not exit on its own (timeout)'),
  duration_ms: z.number().int(),
  timed_out: z.boolean(),
  stdout_bytes: z.number().int().describe('total bytes written, including any not returned'),
  stderr_bytes: z.number().int(),
  stdout_truncated: z.boolean(),
  stderr_truncated: z.boolean(),
});

export const toExecOutput = (r: ExecOutcome): z.output<typeof execOutput> => ({
  stdout: r.stdout,
  stderr: r.stderr,
  exit_code: r.exitCode ?? null,
  duration_ms: r.durationMs,
  timed_out: r.timedOut,
  stdout_bytes: r.stdoutBytes,
  stderr_bytes: r.stderrBytes,
  stdout_truncated: r.stdoutTruncated,
  stderr_truncated: r.stderrTruncated,
});
