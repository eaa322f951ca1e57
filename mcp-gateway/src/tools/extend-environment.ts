import { deadlines, k8sTime, parseDuration } from '@waggle/crds';
import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentId } from './schemas.ts';

export const extendEnvironmentTool = (d: ToolDeps) =>
  defineTool({
    name: 'extend_environment',
    title: 'Extend environment',
    description:
      'Change how long an environment may stay unused before it is deleted (its idle timeout), counting ' +
      'from now. It cannot outlive its maximum lifetime (max_expires_at), which the platform sets; ' +
      'expires_at is when it will be deleted if not used again.',
    input: z.object({
      environment_id: environmentId,
      timeout_minutes: z
        .number({ error: 'timeout_minutes must be a number of minutes' })
        .int({ error: 'timeout_minutes must be a whole number of minutes' })
        .min(1, { error: 'timeout_minutes must be at least 1' })
        .describe('New idle timeout in minutes, from now.'),
    }),
    output: z.object({
      environment_id: z.string(),
      timeout: z.number().int().describe('idle timeout in minutes'),
      expires_at: z.string().describe('deleted at this time unless used again (never after max_expires_at)'),
      max_expires_at: z.string().optional().describe('the end of its maximum lifetime'),
    }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    run: async (args, ctx) => {
      const env = await d.environments.extend(ctx.caller, args.environment_id, args.timeout_minutes);
      const t = deadlines(env);
      return {
        environment_id: args.environment_id,
        timeout: Math.round(parseDuration(env.spec.idleTimeout) / 60_000),
        expires_at: k8sTime(t.expiresAt),
        ...(t.absoluteDeadline ? { max_expires_at: k8sTime(t.absoluteDeadline) } : {}),
      };
    },
  });
