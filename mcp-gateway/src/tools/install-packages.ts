import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import type { ToolDeps } from './deps.ts';
import { OutputTail } from './output-tail.ts';
import { environmentId, execOutput, toExecOutput } from './schemas.ts';

const packageName = z
  .string({ error: 'each package must be a string' })
  .min(1, { error: 'a package name is empty' })
  .max(200, { error: 'a package name is longer than 200 characters' });

export const installPackagesTool = (d: ToolDeps) =>
  defineTool({
    name: 'install_packages',
    title: 'Install packages',
    description:
      "Install packages with the runtime's package manager (pip for python, npm for node, apt for " +
      'shell, or apk in Alpine-based images). Package names may carry a version (pandas==2.2.3, lodash@4). Later execute calls see them.',
    input: z.object({
      environment_id: environmentId,
      packages: z
        .union(
          [
            z.string().describe('Space-separated, as in the original Waggle: "pandas numpy==2.1.0".'),
            z.array(packageName),
          ],
          {
            error:
              'packages must be package names: a list such as ["pandas", "numpy==2.1.0"] or a space-separated string such as "pandas numpy==2.1.0"',
          },
        )
        .transform((v) => (typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : v))
        .pipe(
          z
            .array(packageName)
            .min(1, { error: 'packages is empty; name at least one package' })
            .max(50, { error: 'at most 50 packages per call' }),
        )
        .describe(
          'Package names, optionally with versions: a list ["pandas", "numpy==2.1.0"] or a space-separated string "pandas numpy==2.1.0".',
        ),
    }),
    output: execOutput.extend({ manager: z.string() }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    run: async (args, ctx) => {
      const env = await d.environments.resolveRunning(ctx.caller, args.environment_id, ctx);
      const started = Date.now();
      const tail = new OutputTail();
      const tick = setInterval(() => {
        const s = Math.round((Date.now() - started) / 1000);
        ctx.progress(s, `installing ${s} s${tail.line ? `: ${tail.line}` : ''}`);
      }, 1_000);
      const list = args.packages.join(' ');
      ctx.notify('info', `installing ${list} in ${args.environment_id}`);
      try {
        const { manager, result: r } = await d.sandbox.installPackages(
          env,
          { packages: args.packages, timeoutMs: d.limits.installTimeoutMs },
          { signal: ctx.signal, onOutput: (_s, chunk) => tail.push(chunk) },
        );
        const seconds = Math.round(r.durationMs / 1000);
        if (r.exitCode === 0) ctx.notify('info', `installed ${list} with ${manager} in ${seconds} s`);
        else
          ctx.notify(
            'warning',
            r.timedOut
              ? `installing ${list} with ${manager} timed out after ${seconds} s`
              : `${manager} failed to install ${list} (exit code ${r.exitCode}): ${lastLine(r.stderr)}`,
          );
        return { manager, ...toExecOutput(r) };
      } finally {
        clearInterval(tick);
      }
    },
  });

const lastLine = (text: string): string => {
  const t = new OutputTail();
  t.push(new TextEncoder().encode(text));
  return t.line;
};
