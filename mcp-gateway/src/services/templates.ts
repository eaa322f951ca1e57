import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, TEMPLATE_PLURAL, VERSION, type WaggleTemplate } from '@waggle/crds';
import { InvalidRequestError } from '../errors.ts';

/**
 * The cluster's WaggleTemplates (admin-made, cluster-scoped), read from the apiserver on each
 * call: templates change rarely and are read once per create or list_templates.
 */
export class TemplateService {
  readonly #api: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
  }

  async list(): Promise<WaggleTemplate[]> {
    const res = (await this.#api.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: TEMPLATE_PLURAL,
    })) as {
      items: WaggleTemplate[];
    };
    return res.items
      .filter((t) => !t.metadata.deletionTimestamp)
      .sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
  }

  /** The template `name`, or an InvalidRequestError that says how to find the right name. */
  async get(name: string): Promise<WaggleTemplate> {
    try {
      return (await this.#api.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: TEMPLATE_PLURAL,
        name,
      })) as WaggleTemplate;
    } catch (err) {
      if ((err as { code?: number }).code === 404) {
        throw new InvalidRequestError(
          `template "${name}" does not exist; list_templates shows the templates of this cluster`,
        );
      }
      throw err;
    }
  }
}
