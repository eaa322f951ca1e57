import { z } from 'zod';
import { InvalidRequestError } from '../errors.ts';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { OutputTail } from './output-tail.ts';
import { environmentId, execOutput, MAX_CODE_CHARS, toExecOutput } from './schemas.ts';

/**
 * execute's result: the exec fields when it ran to the end; with background: true only the
 * process fields (MCP wants one object schema, so every field is optional here).
 */
const executeOutput = execOutput.partial().extend({
  background: z.literal(true).optional().describe('set when the code was started in the background'),
  process_id: z.string().optional().describe('background only: pass it to process_output and kill_process'),
  status: z.literal('running').optional(),
  started_at: z.string().optional(),
  message: z.string().optional(),
});

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
      'with timed_out: true. Long runs send progress notifications. With background: true the call ' +
      'returns at once with a process_id and the code keeps running (a dev server, a watcher, a ' +
      'long training loop): read its output with process_output, stop it with kill_process. A ' +
      'background process has no timeout (timeout_seconds is refused with it); it ends by itself, ' +
      'with kill_process, or with its environment — destroyed, or expired after its idle timeout, ' +
      'which counts tool calls, not running processes.',
    input: z.object({
      environment_id: environmentId,
      code: z
        .string({ error: 'code is required: the program text to run' })
        .min(1, { error: 'code is empty; give the program text to run' })
        .max(MAX_CODE_CHARS, {
          error: 'code is larger than 1 MiB; write it with write_file and run the file',
        }),
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
      background: z
        .boolean({ error: 'background must be true or false' })
        .optional()
        .describe('true: start the code and return its process_id at once, without waiting for it.'),
    }),
    output: executeOutput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    run: async (args, ctx) => {
      if (args.background && args.timeout_seconds !== undefined) {
        throw new InvalidRequestError(
          'invalid arguments for execute:\n- timeout_seconds: does not apply with background: true (a ' +
            'background process runs until it exits or kill_process stops it); leave it out',
        );
      }
      const env = await d.environments.resolveRunning(ctx.caller, args.environment_id, ctx);
      if (args.background) {
        const p = await d.sandbox.startProcess(env, {
          code: args.code,
          ...(args.language ? { language: args.language } : {}),
        });
        return {
          background: true as const,
          process_id: p.processId,
          status: 'running' as const,
          started_at: p.startedAt,
          message:
            `started in the background; read its output with process_output (process_id ` +
            `"${p.processId}"), stop it with kill_process`,
        };
      }
      const timeoutMs = Math.round((args.timeout_seconds ?? d.limits.defaultExecTimeoutMs / 1000) * 1000);
      const started = Date.now();
      let bytes = 0;
      const tail = new OutputTail();
      const tick = setInterval(() => {
        const s = Math.round((Date.now() - started) / 1000);
        ctx.progress(s, progressMessage(s, bytes, tail.line), Math.ceil(timeoutMs / 1000));
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
            onOutput: (_s, chunk) => {
              bytes += chunk.length;
              tail.push(chunk);
            },
          },
        );
        return toExecOutput(r);
      } finally {
        clearInterval(tick);
      }
    },
  });

/** "running 12 s, 3400 bytes of output: <the latest line>" */
export const progressMessage = (seconds: number, bytes: number, line: string): string =>
  `running ${seconds} s, ${bytes} bytes of output${line ? `: ${line}` : ''}`;
