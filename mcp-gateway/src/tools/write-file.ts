import { z } from 'zod';
import { InvalidRequestError } from '../errors.ts';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentId, guestPath } from './schemas.ts';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export const writeFileTool = (d: ToolDeps) =>
  defineTool({
    name: 'write_file',
    title: 'Write file',
    description:
      'Write a file in an environment (parent directories are created; an existing file is replaced). ' +
      'Relative paths are relative to /home/sandbox; files may live under /home/sandbox or /tmp. ' +
      'For binary data pass the bytes base64-encoded with encoding: "base64".',
    input: z.object({
      environment_id: environmentId,
      path: guestPath.describe('File path, e.g. "data.csv" or "/home/sandbox/src/main.py".'),
      content: z.string({ error: 'content is required (use "" for an empty file)' }),
      encoding: z
        .enum(['utf8', 'base64'], { error: 'encoding must be "utf8" (default) or "base64"' })
        .optional()
        .describe('How content is encoded: utf8 (default) or base64 for binary files.'),
    }),
    output: z.object({ status: z.literal('written'), path: z.string(), bytes_written: z.number().int() }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    run: async (args, ctx) => {
      const env = await d.environments.resolveRunning(ctx.caller, args.environment_id, ctx);
      let bytes: Buffer;
      if (args.encoding === 'base64') {
        const compact = args.content.replace(/\s+/g, '');
        if (!BASE64.test(compact) || compact.length % 4 !== 0) {
          throw new InvalidRequestError('content is not valid base64 (encoding: "base64" was given)');
        }
        bytes = Buffer.from(compact, 'base64');
      } else {
        bytes = Buffer.from(args.content, 'utf8');
      }
      if (bytes.length > d.limits.maxFileBytes) {
        throw new InvalidRequestError(
          `content is ${bytes.length} bytes; the limit is ${d.limits.maxFileBytes} bytes. Split the file or compress it.`,
        );
      }
      const written = await d.sandbox.writeFile(env, args.path, bytes);
      return { status: 'written' as const, path: args.path, bytes_written: written };
    },
  });
