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

/** Picture formats a model can look at, by their first bytes. */
export function imageMimeType(b: Uint8Array): string | undefined {
  const starts = (sig: number[], at = 0) => sig.every((v, i) => b[at + i] === v);
  if (starts([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'image/png';
  if (starts([0xff, 0xd8, 0xff])) return 'image/jpeg';
  if (starts([0x47, 0x49, 0x46, 0x38]) && (b[4] === 0x37 || b[4] === 0x39) && b[5] === 0x61)
    return 'image/gif';
  if (starts([0x52, 0x49, 0x46, 0x46]) && starts([0x57, 0x45, 0x42, 0x50], 8)) return 'image/webp';
  return undefined;
}

export const readFileTool = (d: ToolDeps) =>
  defineTool({
    name: 'read_file',
    title: 'Read file',
    description:
      'Read a file from an environment. Text comes back as-is; binary files (or encoding: "base64") ' +
      'come back base64-encoded, with encoding saying which. A picture (PNG, JPEG, GIF, WebP) also ' +
      'comes back as an image you can look at, e.g. a plot you made.',
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
      mime_type: z.string().optional().describe('set for pictures (returned as an image block too)'),
    }),
    annotations: { readOnlyHint: true, openWorldHint: false },
    run: async (args, ctx) => {
      const env = await d.environments.resolveRunning(ctx.caller, args.environment_id, ctx);
      const { content, size } = await d.sandbox.readFile(env, args.path, d.limits.maxFileBytes);
      const wanted = args.encoding ?? 'auto';
      const asText = wanted === 'utf8' || (wanted === 'auto' && isText(content));
      const mime = asText ? undefined : imageMimeType(content);
      return {
        path: args.path,
        content: Buffer.from(content).toString(asText ? 'utf8' : 'base64'),
        encoding: asText ? ('utf8' as const) : ('base64' as const),
        size,
        ...(mime ? { mime_type: mime } : {}),
      };
    },
    // Text: the file's text itself, as the original Waggle answered (the fields are in
    // structuredContent). A picture: the image, and the fields without repeating the data.
    // Other binaries: the result as JSON text.
    present: (out) =>
      out.encoding === 'utf8'
        ? [{ type: 'text', text: out.content }]
        : out.mime_type
          ? [
              { type: 'image', data: out.content, mimeType: out.mime_type },
              { type: 'text', text: JSON.stringify({ ...out, content: '(the image block above)' }) },
            ]
          : [{ type: 'text', text: JSON.stringify(out) }],
  });
