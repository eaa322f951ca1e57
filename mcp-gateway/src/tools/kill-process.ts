import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { processId } from './process-output.ts';
import { environmentId } from './schemas.ts';

export const killProcessTool = (d: ToolDeps) =>
  defineTool({
    name: 'kill_process',
    title: 'Kill background process',
    description:
      'Stop a background process (execute with background: true) and every process it started. ' +
      'Safe to repeat: a process that has already ended gives status "already_exited" and its ' +
      'exit code. Its output stays readable with process_output.',
    input: z.object({ environment_id: environmentId, process_id: processId }),
    output: z.object({
      process_id: z.string(),
      status: z.enum(['killed', 'already_exited']),
      exit_code: z
        .number()
        .int()
        .nullable()
        .describe('how an already ended process exited; null when it was killed'),
    }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    run: async (args, ctx) => {
      const env = await d.environments.resolveRunning(ctx.caller, args.environment_id, ctx);
      const r = await d.sandbox.killProcess(env, args.process_id);
      return {
        process_id: args.process_id,
        status: r.wasRunning ? ('killed' as const) : ('already_exited' as const),
        exit_code: r.wasRunning ? null : (r.exitCode ?? null),
      };
    },
  });
