import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { environmentId, execOutput, toExecOutput } from './schemas.ts';

export const installPackagesTool = (d: ToolDeps) =>
  defineTool({
    name: 'install_packages',
    title: 'Install packages',
    description:
      "Install packages with the runtime's package manager (pip for python, npm for node, apt for " +
      'shell). Package names may carry a version (pandas==2.2.3, lodash@4). Later execute calls see them.',
    input: z.object({
      environment_id: environmentId,
      packages: z
        .array(
          z
            .string({ error: 'each package must be a string' })
            .min(1, { error: 'a package name is empty' })
            .max(200, { error: 'a package name is longer than 200 characters' }),
          { error: 'packages must be a list of package names, e.g. ["pandas", "numpy==2.1.0"]' },
        )
        .min(1, { error: 'packages is empty; name at least one package' })
        .max(50, { error: 'at most 50 packages per call' }),
    }),
    output: execOutput.extend({ manager: z.string() }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    run: async (args, ctx) => {
      const env = d.environments.getRunning(ctx.caller, args.environment_id);
      const started = Date.now();
      const tick = setInterval(() => {
        const s = Math.round((Date.now() - started) / 1000);
        ctx.progress(s, `installing for ${s} s`);
      }, 2_000);
      try {
        const { manager, result: r } = await d.sandbox.installPackages(
          env,
          { packages: args.packages, timeoutMs: d.limits.installTimeoutMs },
          { signal: ctx.signal },
        );
        return { manager, ...toExecOutput(r) };
      } finally {
        clearInterval(tick);
      }
    },
  });
