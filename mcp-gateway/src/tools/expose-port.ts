import { z } from 'zod';
import { InvalidRequestError } from '../errors.ts';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentId, guestPort } from './schemas.ts';

export const exposePortTool = (d: ToolDeps) =>
  defineTool({
    name: 'expose_port',
    title: 'Expose port',
    description:
      'Give a server running in an environment (e.g. `python3 -m http.server 8000` started with execute ' +
      'background: true) a URL on the Waggle gateway; HTTP and WebSocket are relayed to the port inside the ' +
      'VM. By default the URL needs the same bearer token as this MCP connection; public: true returns an ' +
      'unguessable URL anyone can open until expires_minutes pass. unexpose_port or destroy_environment end it.',
    input: z.object({
      environment_id: environmentId,
      port: guestPort.describe('TCP port the server listens on inside the environment (1-65535).'),
      public: z
        .boolean({ error: 'public must be true or false' })
        .optional()
        .describe('true: a secret URL anyone holding it may open, until it expires. Default false.'),
      expires_minutes: z
        .number({ error: 'expires_minutes must be a number of minutes' })
        .int({ error: 'expires_minutes must be a whole number of minutes' })
        .min(1, { error: 'expires_minutes must be at least 1' })
        .max(d.previews.maxPublicMinutes, {
          error: `expires_minutes must be at most ${d.previews.maxPublicMinutes}`,
        })
        .optional()
        .describe('With public: true, minutes until the URL stops working (default 60).'),
    }),
    output: z.object({
      environment_id: z.string(),
      port: z.number().int(),
      url: z.string(),
      public: z.boolean(),
      expires_at: z.string().optional(),
      auth: z.enum(['bearer', 'none']).describe('bearer: send "Authorization: Bearer <your token>"'),
    }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    run: async (args, ctx) => {
      if (args.expires_minutes !== undefined && !args.public) {
        throw new InvalidRequestError(
          'expires_minutes applies to public URLs only; pass public: true, or leave expires_minutes out',
        );
      }
      if (d.insecure) {
        throw new InvalidRequestError(
          'preview URLs are off while the gateway runs without authentication (WAGGLE_AUTH_MODE=insecure): ' +
            "a guest's page would share the gateway's origin and could drive /mcp from your browser. " +
            'Use API keys or Kubernetes tokens to expose ports.',
        );
      }
      const env = await d.environments.resolveRunning(ctx.caller, args.environment_id, ctx);
      // Refuse a port nothing listens on now, rather than hand out a URL that answers 502.
      const probe = await d.sandbox.openPort(env, args.port);
      probe.destroy();
      const r = await d.previews.expose(ctx.caller, args.environment_id, args.port, {
        public: args.public ?? false,
        ...(args.expires_minutes !== undefined ? { expiresMinutes: args.expires_minutes } : {}),
      });
      const base = (d.publicUrl ?? ctx.requestBaseUrl ?? '').replace(/\/+$/, '');
      return {
        environment_id: args.environment_id,
        port: r.port,
        url: `${base}${r.path}`,
        public: r.public,
        ...(r.expiresAt ? { expires_at: r.expiresAt } : {}),
        auth: r.public ? ('none' as const) : ('bearer' as const),
      };
    },
  });

export const unexposePortTool = (d: ToolDeps) =>
  defineTool({
    name: 'unexpose_port',
    title: 'Unexpose port',
    description: 'End the preview URLs (private and public) of a port that expose_port opened.',
    input: z.object({ environment_id: environmentId, port: guestPort }),
    output: z.object({ environment_id: z.string(), port: z.number().int(), status: z.literal('unexposed') }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    run: async (args, ctx) => {
      const existed = await d.previews.unexpose(ctx.caller, args.environment_id, args.port);
      if (!existed) {
        throw new InvalidRequestError(
          `port ${args.port} of environment "${args.environment_id}" is not exposed; nothing to do`,
        );
      }
      return { environment_id: args.environment_id, port: args.port, status: 'unexposed' as const };
    },
  });
