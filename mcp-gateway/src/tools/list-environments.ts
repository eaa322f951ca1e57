import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentSummary, summarize } from './schemas.ts';

export const listEnvironmentsTool = (d: ToolDeps) =>
  defineTool({
    name: 'list_environments',
    title: 'List environments',
    description: 'List your environments with their status.',
    input: z.object({}),
    output: z.object({ environments: z.array(environmentSummary), count: z.number().int() }),
    annotations: { readOnlyHint: true, openWorldHint: false },
    run: async (_args, ctx) => {
      const environments = d.environments.list(ctx.caller).map(summarize);
      return { environments, count: environments.length };
    },
  });
