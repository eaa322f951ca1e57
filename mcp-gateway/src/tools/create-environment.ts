import { ALLOW_DOMAIN_PATTERN, MAX_ALLOW_DOMAINS, parseDuration } from '@waggle/crds';
import { z } from 'zod';
import { InvalidRequestError } from '../errors.ts';
import { defineTool } from '../mcp/tool.ts';
import { IDLE_ACTION_CHOICES, NETWORK_CHOICES } from '../services/environment-spec.ts';
import type { ToolDeps } from './deps.ts';
import { environmentSummary, runtime, summarize } from './schemas.ts';

const PHASE_STEP: Record<string, number> = { Pending: 1, Scheduled: 2, Booting: 3, Running: 4 };

export const createEnvironmentTool = (d: ToolDeps) =>
  defineTool({
    name: 'create_environment',
    title: 'Create environment',
    description:
      'Create an isolated Linux microVM (its own kernel) with a python, node or shell runtime, or from a ' +
      'template of this cluster (list_templates: images with packages preinstalled, sizes, network). ' +
      'Returns once it is running, typically within seconds; use the returned environment_id with ' +
      'execute, write_file, read_file, list_files and install_packages. After timeout_minutes ' +
      'without use it is deleted, or with idle_action "suspend" suspended: its memory is saved and ' +
      'the next call on it resumes it where it stopped (within seconds). Destroy it when done.',
    input: z.object({
      runtime: runtime
        .optional()
        .describe(
          'Language runtime: python, node or shell (a template brings its own; give one or the other).',
        ),
      template: z
        .string()
        .max(253, { error: 'template must be at most 253 characters' })
        .optional()
        .describe(
          'Name of a template from list_templates: its runtime, image, resources, network and idle timeout (your network and timeout_minutes still apply when given).',
        ),
      name: z
        .string()
        .max(253, { error: 'name must be at most 253 characters' })
        .optional()
        .describe('A label for you; shown by list_environments.'),
      timeout_minutes: z
        .number({ error: 'timeout_minutes must be a number of minutes' })
        .int({ error: 'timeout_minutes must be a whole number of minutes' })
        .min(1, { error: 'timeout_minutes must be at least 1' })
        .max(d.environments.maxTimeoutMinutes(), {
          error: `timeout_minutes must be at most ${d.environments.maxTimeoutMinutes()} (the maximum lifetime of an environment)`,
        })
        .optional()
        .describe(
          `Idle timeout in minutes (default ${d.limits.defaultIdleTimeoutMinutes}, at most ${d.environments.maxTimeoutMinutes()}: the maximum lifetime, however active).`,
        ),
      network: z
        .enum(NETWORK_CHOICES, { error: 'network must be "none" or "internet"' })
        .optional()
        .describe(
          `"internet": the guest can reach the internet (package indexes) but never this cluster's nodes, pods, services or private networks; "none": no network at all. Default "${d.limits.defaultNetwork}".`,
        ),
      idle_action: z
        .enum(IDLE_ACTION_CHOICES, { error: 'idle_action must be "delete" or "suspend"' })
        .optional()
        .describe(
          `After timeout_minutes without use: "delete" the environment, or "suspend" it (no CPU or memory used; the next call resumes it with its processes and files; it is still deleted at its maximum lifetime). Default "${d.limits.defaultIdleAction}".`,
        ),
      allow_domains: z
        .array(
          z
            .string()
            .max(253)
            .transform((v) => v.toLowerCase())
            .pipe(
              z.string().regex(ALLOW_DOMAIN_PATTERN, {
                error:
                  'each allow_domains entry must be a domain name such as "pypi.org" or "*.pythonhosted.org"',
              }),
            ),
        )
        .min(1, {
          error: 'allow_domains must list at least one domain (leave it out for the whole internet)',
        })
        .max(MAX_ALLOW_DOMAINS, { error: `allow_domains takes at most ${MAX_ALLOW_DOMAINS} domains` })
        .optional()
        .describe(
          'Limit the guest to these domain names (e.g. ["pypi.org", "*.pythonhosted.org"]); any other name is refused at once. Implies network "internet".',
        ),
    }),
    output: environmentSummary.extend({
      timeout: z.number().int().describe('idle timeout in minutes'),
    }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    run: async (args, ctx) => {
      if (args.allow_domains && args.network === 'none') {
        throw new InvalidRequestError(
          'allow_domains needs network "internet"; with "none" the guest reaches nothing',
        );
      }
      if (!args.runtime && !args.template) {
        throw new InvalidRequestError(
          'give a runtime (python, node or shell) or a template (list_templates shows them)',
        );
      }
      const template = args.template ? await d.templates.get(args.template) : undefined;
      if (template && args.runtime && args.runtime !== template.spec.runtime) {
        throw new InvalidRequestError(
          `template "${args.template}" is a ${template.spec.runtime} template; leave runtime out or use ${template.spec.runtime}`,
        );
      }
      const started = Date.now();
      let lastProgress = 0;
      const env = await d.environments.create(
        ctx.caller,
        {
          runtime: template?.spec.runtime ?? (args.runtime as NonNullable<typeof args.runtime>),
          ...(template ? { template } : {}),
          ...(args.name ? { name: args.name } : {}),
          ...(args.timeout_minutes ? { timeoutMinutes: args.timeout_minutes } : {}),
          ...(args.idle_action ? { idleAction: args.idle_action } : {}),
          ...(args.allow_domains
            ? { network: 'internet' as const, allowDomains: args.allow_domains }
            : args.network
              ? { network: args.network }
              : {}),
        },
        {
          signal: ctx.signal,
          onProgress: (phase, message) => {
            // Progress must increase: steps within a phase (an image pull's) count in tenths.
            const step = PHASE_STEP[phase] ?? 0;
            const value = Math.max(step, Math.min(step + 0.9, Math.round((lastProgress + 0.1) * 10) / 10));
            if (value > lastProgress) {
              lastProgress = value;
              ctx.progress(value, message, 4);
            }
            ctx.notify(
              'info',
              `create_environment: ${phase.toLowerCase()}${message && message !== phase ? `: ${message}` : ''}`,
            );
          },
        },
      );
      ctx.notify(
        'info',
        `environment ${env.metadata.name} is running on ${env.status?.nodeName ?? 'its node'} after ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
      return {
        ...summarize(env),
        // As the apiserver stored it (the CRD default applies if the gateway sent none).
        timeout: Math.round(parseDuration(env.spec.idleTimeout) / 60_000),
      };
    },
  });
