import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentId, execOutput, toExecOutput } from './schemas.ts';

const LANGUAGE_ALIASES: Record<string, string> = {
  python: 'python',
  python3: 'python',
  py: 'python',
  node: 'node',
  nodejs: 'node',
  javascript: 'node',
  js: 'node',
  shell: 'shell',
  sh: 'shell',
  bash: 'shell',
};

export const executeTool = (d: ToolDeps) =>
  defineTool({
    name: 'execute',
    title: 'Execute code',
    description:
      'Run code in an environment and return stdout, stderr and the exit code. The code is saved ' +
      'to a file and run by the interpreter (python3, node, or sh for shell), as the unprivileged ' +
      'user in /home/sandbox. On timeout the process is killed and the output so far is returned ' +
      'with timed_out: true. Long runs send progress notifications.',
    input: z.object({
      environment_id: environmentId,
      code: z
        .string({ error: 'code is required: the program text to run' })
        .min(1, { error: 'code is empty; give the program text to run' })
        .max(1_048_576, { error: 'code is larger than 1 MiB; write it with write_file and run the file' }),
      language: z
        .string()
        .transform((v, ctx) => {
          const key = v.trim().toLowerCase();
          const l = Object.hasOwn(LANGUAGE_ALIASES, key) ? LANGUAGE_ALIASES[key] : undefined;
          if (!l) {
            ctx.addIssue({
              code: 'custom',
              message: `language "${v}" is not supported; use python, node or shell`,
            });
            return z.NEVER;
          }
          return l;
        })
        .optional()
        .describe("python, node or shell (default: the environment's runtime)."),
      timeout_seconds: z
        .number({ error: 'timeout_seconds must be a number' })
        .positive({ error: 'timeout_seconds must be more than 0' })
        .max(d.limits.maxExecTimeoutMs / 1000, {
          error: `timeout_seconds must be at most ${d.limits.maxExecTimeoutMs / 1000}`,
        })
        .optional()
        .describe(`Kill the code after this many seconds (default ${d.limits.defaultExecTimeoutMs / 1000}).`),
    }),
    output: execOutput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    run: async (args, ctx) => {
      const env = d.environments.getRunning(ctx.caller, args.environment_id);
      const timeoutMs = Math.round((args.timeout_seconds ?? d.limits.defaultExecTimeoutMs / 1000) * 1000);
      const started = Date.now();
      let bytes = 0;
      const tick = setInterval(() => {
        const s = Math.round((Date.now() - started) / 1000);
        ctx.progress(s, `running for ${s} s, ${bytes} bytes of output so far`, Math.ceil(timeoutMs / 1000));
      }, 1_000);
      try {
        const r = await d.sandbox.exec(
          env,
          {
            code: args.code,
            ...(args.language ? { language: args.language } : {}),
            timeoutMs,
            maxOutputBytes: d.limits.maxOutputBytes,
          },
          {
            signal: ctx.signal,
            onOutput: (_s, n) => {
              bytes += n;
            },
          },
        );
        return toExecOutput(r);
      } finally {
        clearInterval(tick);
      }
    },
  });
