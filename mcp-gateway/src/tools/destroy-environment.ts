import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentId } from './schemas.ts';

export const destroyEnvironmentTool = (d: ToolDeps) =>
  defineTool({
    name: 'destroy_environment',
    title: 'Destroy environment',
    description: 'Delete an environment and its VM. Files in it are lost.',
    input: z.object({ environment_id: environmentId }),
    output: z.object({ status: z.literal('destroyed'), message: z.string(), environment_id: z.string() }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    run: async (args, ctx) => {
      await d.environments.destroy(ctx.caller, args.environment_id);
      return {
        status: 'destroyed' as const,
        message: `environment ${args.environment_id} is being destroyed`,
        environment_id: args.environment_id,
      };
    },
  });
