import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentId } from './schemas.ts';

/** The most a process_output call waits for new output (the node-agent's cap too). */
export const MAX_WAIT_SECONDS = 30;

export const processId = z
  .string({ error: 'process_id is required: the process_id execute with background: true returned' })
  .regex(/^proc-[0-9a-f]{16}$/, {
    error: 'process_id must be one that execute with background: true returned, like "proc-3f9a1c2b7d4e5f60"',
  })
  .describe('The process_id that execute with background: true returned.');

export const processOutputTool = (d: ToolDeps) =>
  defineTool({
    name: 'process_output',
    title: 'Read background process output',
    description:
      'Read what a background process (execute with background: true) printed since `since`, ' +
      'whether it still runs, and its exit code once it has exited. Pass the next_since of your ' +
      'previous call as `since` to get only new output (0: all output still kept). With ' +
      `wait_seconds (at most ${MAX_WAIT_SECONDS}), the call waits for new output or the exit ` +
      'instead of answering at once with nothing. About 1 MiB of output is kept per process ' +
      '(stdout and stderr together); older output is dropped, and dropped_bytes says how much of ' +
      'it you missed. stdout_bytes and stderr_bytes count everything printed.',
    input: z.object({
      environment_id: environmentId,
      process_id: processId,
      since: z
        .number({ error: 'since must be a number: the next_since of your previous process_output call' })
        .int({ error: 'since must be a whole number of bytes: the next_since of your previous call' })
        .min(0, { error: 'since must be 0 or more: the next_since of your previous call, or 0' })
        .optional()
        .describe('Output bytes already seen: the next_since of the previous call (default 0: all).'),
      wait_seconds: z
        .number({ error: 'wait_seconds must be a number of seconds' })
        .min(0, { error: 'wait_seconds must be 0 or more' })
        .max(MAX_WAIT_SECONDS, { error: `wait_seconds must be at most ${MAX_WAIT_SECONDS}` })
        .optional()
        .describe(
          `With nothing new yet, wait up to this many seconds (max ${MAX_WAIT_SECONDS}) for output or the exit.`,
        ),
    }),
    output: z.object({
      process_id: z.string(),
      status: z.enum(['running', 'exited', 'killed']),
      stdout: z.string().describe('new stdout since `since`'),
      stderr: z.string().describe('new stderr since `since`'),
      next_since: z.number().int().describe('pass as `since` next time'),
      dropped_bytes: z.number().int().describe('output after `since` that was no longer kept'),
      more: z.boolean().describe('more output is kept than this answer carried: call again at once'),
      running: z.boolean(),
      exit_code: z.number().int().nullable().describe('null while it runs, and when it was killed'),
      killed: z.boolean().describe('stopped by kill_process (or its connection was lost: see message)'),
      stdout_bytes: z.number().int().describe('total bytes printed to stdout, kept or not'),
      stderr_bytes: z.number().int(),
      started_at: z.string(),
      ended_at: z.string().optional(),
      message: z.string().optional(),
    }),
    annotations: { readOnlyHint: true, openWorldHint: false },
    run: async (args, ctx) => {
      const env = await d.environments.resolveRunning(ctx.caller, args.environment_id, ctx);
      const r = await d.sandbox.readProcessOutput(
        env,
        {
          processId: args.process_id,
          since: args.since ?? 0,
          waitMs: Math.round((args.wait_seconds ?? 0) * 1000),
          maxBytes: d.limits.maxOutputBytes,
        },
        { signal: ctx.signal },
      );
      return {
        process_id: r.processId,
        status: r.running ? ('running' as const) : r.killed ? ('killed' as const) : ('exited' as const),
        stdout: r.stdout,
        stderr: r.stderr,
        next_since: r.nextSince,
        dropped_bytes: r.droppedBytes,
        more: r.more,
        running: r.running,
        exit_code: r.exitCode ?? null,
        killed: r.killed,
        stdout_bytes: r.stdoutBytes,
        stderr_bytes: r.stderrBytes,
        started_at: r.startedAt,
        ...(r.endedAt ? { ended_at: r.endedAt } : {}),
        ...(r.message && !r.running ? { message: r.message } : {}),
      };
    },
  });
