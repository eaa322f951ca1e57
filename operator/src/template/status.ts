import {
  TemplateConditionType,
  type TemplateNodeStatus,
  TemplateReason,
  type WaggleTemplate,
  type WaggleTemplateStatus,
} from '@waggle/crds';
import { setCondition } from '../environment/conditions.ts';

/**
 * The status a template should have, from what each node that runs images said of its image
 * (`nodes`, one entry per such Ready node). A pure function (the clock only sets a condition's
 * transition time).
 */
export function templateStatus(
  template: WaggleTemplate,
  nodes: readonly TemplateNodeStatus[],
  now: Date,
): WaggleTemplateStatus {
  const observedGeneration = template.metadata.generation ?? 0;
  if (!template.spec.image) {
    return {
      observedGeneration,
      conditions: setCondition(
        template.status?.conditions,
        {
          type: TemplateConditionType.Ready,
          status: 'True',
          reason: TemplateReason.BuiltInImage,
          message: `environments run the built-in ${template.spec.runtime} image of their node: nothing to pull`,
        },
        now,
      ),
    };
  }
  const sorted = [...nodes].sort((a, b) => a.name.localeCompare(b.name));
  const ready = sorted.filter((n) => n.state === 'Ready');
  const failed = sorted.filter((n) => n.state === 'Failed');
  const pulling = sorted.filter((n) => n.state === 'Pulling');
  const digests = [...new Set(ready.map((n) => n.digest).filter(Boolean))];
  const condition =
    sorted.length === 0
      ? {
          status: 'False' as const,
          reason: TemplateReason.NoImageNodes,
          message:
            'no Ready node runs OCI images: nodes need a non-empty image allow-list (chart nodeAgent.images.allow) that admits this image',
        }
      : failed.length > 0
        ? {
            status: 'False' as const,
            reason: TemplateReason.PullFailed,
            message: failed.map((n) => `${n.name}: ${n.message}`).join('; '),
          }
        : pulling.length > 0
          ? {
              status: 'False' as const,
              reason: TemplateReason.Pulling,
              message: `${ready.length} of ${sorted.length} nodes have the image; pulling on ${pulling.map((n) => n.name).join(', ')}`,
            }
          : {
              status: 'True' as const,
              reason: TemplateReason.ImagePulled,
              message: `every node that runs images has it (${digests.join(', ')})`,
            };
  return {
    nodes: sorted,
    ready: `${ready.length}/${sorted.length}`,
    observedGeneration,
    conditions: setCondition(
      template.status?.conditions,
      { type: TemplateConditionType.Ready, ...condition },
      now,
    ),
  };
}
