import { z } from 'zod';
import { defineTool } from '../mcp/tool.ts';
import { networkChoiceOf } from '../services/environment-spec.ts';
import type { ToolDeps } from './deps.ts';

export const listTemplatesTool = (d: ToolDeps) =>
  defineTool({
    name: 'list_templates',
    title: 'List templates',
    description:
      "List this cluster's environment templates (made by its admins): pass a name to create_environment's " +
      'template to get its runtime, image (packages preinstalled), resources and network.',
    input: z.object({}),
    output: z.object({
      templates: z.array(
        z.object({
          name: z.string(),
          description: z.string().optional(),
          runtime: z.string(),
          image: z
            .string()
            .optional()
            .describe("the OCI image it runs; absent: the runtime's built-in image"),
          cpus: z.number().int(),
          memory_mb: z.number().int(),
          disk_mb: z.number().int(),
          network: z.string().describe('none or internet'),
          allow_domains: z.array(z.string()).optional(),
          idle_timeout: z.string().optional(),
          image_ready: z
            .boolean()
            .optional()
            .describe(
              'with an image: whether the nodes have it already (true: creates start without a pull; false: the first create may wait for one)',
            ),
        }),
      ),
      count: z.number().int(),
    }),
    annotations: { readOnlyHint: true, openWorldHint: false },
    run: async () => {
      const templates = (await d.templates.list()).map((t) => ({
        name: t.metadata.name as string,
        ...(t.spec.description ? { description: t.spec.description } : {}),
        runtime: t.spec.runtime,
        ...(t.spec.image ? { image: t.spec.image } : {}),
        cpus: t.spec.resources.cpus,
        memory_mb: t.spec.resources.memoryMiB,
        disk_mb: t.spec.resources.diskMiB,
        network: networkChoiceOf(t.spec.network.egress),
        ...(t.spec.network.allowDomains?.length ? { allow_domains: t.spec.network.allowDomains } : {}),
        ...(t.spec.idleTimeout ? { idle_timeout: t.spec.idleTimeout } : {}),
        ...(t.spec.image
          ? {
              // Of this spec's image: a status written for an earlier generation says nothing.
              image_ready:
                t.status?.observedGeneration === t.metadata.generation &&
                t.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True',
            }
          : {}),
      }));
      return { templates, count: templates.length };
    },
  });
