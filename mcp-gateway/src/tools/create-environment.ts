import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentSummary, runtime, summarize } from './schemas.ts';

const PHASE_STEP: Record<string, number> = { Pending: 1, Scheduled: 2, Booting: 3, Running: 4 };

export const createEnvironmentTool = (d: ToolDeps) =>
  defineTool({
    name: 'create_environment',
    title: 'Create environment',
    description:
      'Create an isolated Linux microVM (its own kernel) with a python, node or shell runtime. ' +
      'Returns once it is running, typically within seconds; use the returned environment_id with ' +
      'execute, write_file, read_file, list_files and install_packages. It is deleted after ' +
      'timeout_minutes without use; destroy it when done.',
    input: z.object({
      runtime: runtime.describe('Language runtime: python, node or shell.'),
      name: z
        .string()
        .max(253, { error: 'name must be at most 253 characters' })
        .optional()
        .describe('A label for you; shown by list_environments.'),
      timeout_minutes: z
        .number({ error: 'timeout_minutes must be a number of minutes' })
        .int({ error: 'timeout_minutes must be a whole number of minutes' })
        .min(1, { error: 'timeout_minutes must be at least 1' })
        .max(10_080, { error: 'timeout_minutes must be at most 10080 (7 days)' })
        .optional()
        .describe(`Idle timeout in minutes (default ${d.limits.defaultIdleTimeoutMinutes}).`),
    }),
    output: environmentSummary.extend({
      timeout: z.number().int().describe('idle timeout in minutes'),
    }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    run: async (args, ctx) => {
      const env = await d.environments.create(
        ctx.caller,
        {
          runtime: args.runtime,
          ...(args.name ? { name: args.name } : {}),
          ...(args.timeout_minutes ? { timeoutMinutes: args.timeout_minutes } : {}),
        },
        {
          signal: ctx.signal,
          onProgress: (phase, message) => ctx.progress(PHASE_STEP[phase] ?? 0, message, 4),
        },
      );
      return {
        ...summarize(env),
        timeout: args.timeout_minutes ?? d.limits.defaultIdleTimeoutMinutes,
      };
    },
  });
