import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, TEMPLATE_PLURAL, VERSION, type WaggleEnvironment, type WaggleTemplate } from '@waggle/crds';
import { Code, ConnectError } from '@waggle/node-agent/client';

/** Registry credentials for an environment's image, when a template grants them. */
export interface PullConfigSource {
  /** The `.dockerconfigjson` for `env.spec.image`, or undefined (an anonymous pull). */
  forEnvironment(env: WaggleEnvironment): Promise<string | undefined>;
  /** The `.dockerconfigjson` for the template's own image, or undefined (an anonymous pull). */
  forTemplate(template: WaggleTemplate): Promise<string | undefined>;
}

const code = (err: unknown) => (err as { code?: number }).code;

/**
 * Reads a template's imagePullSecret from Waggle's own namespace. It serves only the template's
 * own image: an environment naming the template with another image (as anyone who may create
 * environments could write) pulls anonymously, so the credentials never reach an image the admin
 * did not put in the template. Failures the admin must fix fail the environment with a
 * FailedPrecondition saying what to do; the apiserver being unreachable is retried.
 */
export class TemplatePullConfigs implements PullConfigSource {
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;
  readonly #namespace: string;

  constructor(kc: KubeConfig, namespace: string) {
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#namespace = namespace;
  }

  async forEnvironment(env: WaggleEnvironment): Promise<string | undefined> {
    const name = env.spec.template;
    if (!name || !env.spec.image) return undefined;
    let template: WaggleTemplate;
    try {
      template = (await this.#custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: TEMPLATE_PLURAL,
        name,
      })) as WaggleTemplate;
    } catch (err) {
      if (code(err) === 404) return undefined; // the template is gone: the image may be public
      throw new ConnectError(`reading template "${name}": ${(err as Error).message}`, Code.Unavailable);
    }
    if (template.spec.image !== env.spec.image) return undefined;
    return this.forTemplate(template);
  }

  /** The `.dockerconfigjson` of the template's imagePullSecret (for its own image), or undefined. */
  async forTemplate(template: WaggleTemplate): Promise<string | undefined> {
    const name = template.metadata.name as string;
    const secretName = template.spec.imagePullSecret?.name;
    if (!secretName || !template.spec.image) return undefined;
    try {
      const secret = await this.#core.readNamespacedSecret({ name: secretName, namespace: this.#namespace });
      const data = secret.data?.['.dockerconfigjson'];
      if (!data) {
        throw new ConnectError(
          `template "${name}": Secret ${this.#namespace}/${secretName} has no .dockerconfigjson (make it with kubectl create secret docker-registry)`,
          Code.FailedPrecondition,
        );
      }
      return Buffer.from(data, 'base64').toString('utf8');
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      if (code(err) === 404 || code(err) === 403) {
        throw new ConnectError(
          `template "${name}": Waggle cannot read its imagePullSecret ${this.#namespace}/${secretName} ` +
            `(${code(err) === 404 ? 'not found' : 'forbidden'}): create it in that namespace and list it in the chart's nodeAgent.images.pullSecrets`,
          Code.FailedPrecondition,
        );
      }
      throw new ConnectError(
        `reading Secret ${this.#namespace}/${secretName}: ${(err as Error).message}`,
        Code.Unavailable,
      );
    }
  }
}
