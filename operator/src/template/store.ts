import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import {
  GROUP,
  TEMPLATE_PLURAL,
  VERSION,
  type WaggleTemplate,
  type WaggleTemplateStatus,
} from '@waggle/crds';
import type { TemplateWriter } from './template-controller.ts';

/**
 * Writes WaggleTemplate status through the status subresource, with the resourceVersion read (a
 * stale view fails with 409 Conflict and is retried with fresh state).
 */
export class TemplateStore implements TemplateWriter {
  readonly #api: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
  }

  async updateStatus(template: WaggleTemplate, status: WaggleTemplateStatus): Promise<WaggleTemplate> {
    return (await this.#api.replaceClusterCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      plural: TEMPLATE_PLURAL,
      name: template.metadata.name as string,
      body: { ...template, status },
    })) as WaggleTemplate;
  }
}
