import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentId, guestPath } from './schemas.ts';

export const listFilesTool = (d: ToolDeps) =>
  defineTool({
    name: 'list_files',
    title: 'List files',
    description: 'List a directory in an environment (default /home/sandbox).',
    input: z.object({
      environment_id: environmentId,
      path: guestPath.optional().describe('Directory, e.g. "." or "/tmp" (default /home/sandbox).'),
    }),
    output: z.object({
      path: z.string(),
      files: z.array(
        z.object({
          name: z.string(),
          size: z.number().int(),
          is_dir: z.boolean(),
          mode: z.string(),
          modified: z.string(),
          type: z.string(),
        }),
      ),
      count: z.number().int(),
      truncated: z.boolean(),
    }),
    annotations: { readOnlyHint: true, openWorldHint: false },
    run: async (args, ctx) => {
      const env = await d.environments.resolveRunning(ctx.caller, args.environment_id, ctx);
      const r = await d.sandbox.listFiles(env, args.path ?? '/home/sandbox');
      const files = r.entries.map((e) => ({
        name: e.name,
        size: e.size,
        is_dir: e.type === 'directory',
        mode: e.mode,
        modified: e.modified,
        type: e.type,
      }));
      return { path: r.path, files, count: files.length, truncated: r.truncated };
    },
  });
