import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentId, guestPath } from './schemas.ts';

/** True when the bytes are valid UTF-8 without NULs (i.e. safe to return as text). */
const isText = (b: Uint8Array): boolean => {
  if (b.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
};

export const readFileTool = (d: ToolDeps) =>
  defineTool({
    name: 'read_file',
    title: 'Read file',
    description:
      'Read a file from an environment. Text comes back as-is; binary files (or encoding: "base64") ' +
      'come back base64-encoded, with encoding saying which.',
    input: z.object({
      environment_id: environmentId,
      path: guestPath.describe('File path, e.g. "result.json" or "/tmp/out.png".'),
      encoding: z
        .enum(['auto', 'utf8', 'base64'], { error: 'encoding must be "auto" (default), "utf8" or "base64"' })
        .optional()
        .describe('auto (default: text if it is valid UTF-8, else base64), utf8 or base64.'),
    }),
    output: z.object({
      path: z.string(),
      content: z.string(),
      encoding: z.enum(['utf8', 'base64']),
      size: z.number().int(),
    }),
    annotations: { readOnlyHint: true, openWorldHint: false },
    run: async (args, ctx) => {
      const env = d.environments.getRunning(ctx.caller, args.environment_id);
      const { content, size } = await d.sandbox.readFile(env, args.path, d.limits.maxFileBytes);
      const wanted = args.encoding ?? 'auto';
      const asText = wanted === 'utf8' || (wanted === 'auto' && isText(content));
      return {
        path: args.path,
        content: Buffer.from(content).toString(asText ? 'utf8' : 'base64'),
        encoding: asText ? ('utf8' as const) : ('base64' as const),
        size,
      };
    },
  });
