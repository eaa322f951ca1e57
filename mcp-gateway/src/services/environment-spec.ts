import {
  type EgressMode,
  formatDuration,
  type IdleAction,
  parseDuration,
  type Runtime,
  type WaggleEnvironmentSpecInput,
  type WaggleTemplate,
} from '@waggle/crds';

/** What a caller may ask for: no network, or the internet (never the node or private ranges). */
export const NETWORK_CHOICES = ['none', 'internet'] as const;
export type NetworkChoice = (typeof NETWORK_CHOICES)[number];

/** What happens to an idle environment: deleted, or suspended and resumed by the next call. */
export const IDLE_ACTION_CHOICES = ['delete', 'suspend'] as const;
export type IdleActionChoice = (typeof IDLE_ACTION_CHOICES)[number];
export const idleActionFor = (choice: IdleActionChoice): IdleAction =>
  choice === 'suspend' ? 'Suspend' : 'Delete';
export const idleActionChoiceOf = (action: IdleAction | undefined): IdleActionChoice =>
  action === 'Suspend' ? 'suspend' : 'delete';

export const egressFor = (choice: NetworkChoice): EgressMode => (choice === 'none' ? 'none' : 'all');
export const networkChoiceOf = (egress: EgressMode): NetworkChoice =>
  egress === 'none' ? 'none' : 'internet';

export interface CreateRequest {
  runtime: Runtime;
  name?: string;
  timeoutMinutes?: number;
  network?: NetworkChoice;
  /** With the internet: the only domain names the guest may reach. */
  allowDomains?: string[];
  idleAction?: IdleActionChoice;
  /**
   * The WaggleTemplate it is made from: its runtime, image, resources and network, and its idle
   * timeout unless the caller chose one (the gateway's defaults never override a template).
   */
  template?: WaggleTemplate;
}

/** What the gateway's configuration sets on every new environment; unset: the CRD's default. */
export interface SpecDefaults {
  cpus?: number;
  memoryMiB?: number;
  /** Guest network when the caller does not say (WAGGLE_DEFAULT_NETWORK). */
  network?: NetworkChoice;
  /** At the idle timeout, when the caller does not say (WAGGLE_IDLE_ACTION). */
  idleAction?: IdleActionChoice;
  idleTimeoutMinutes: number;
  /** spec.maxLifetime of new environments (WAGGLE_MAX_LIFETIME); caps every idle timeout. */
  maxLifetimeMs: number;
}

/**
 * The spec of a new environment: what the caller asked for and what the gateway is configured
 * to set. Everything else (disk, and resources or network nobody chose) is left out, so the
 * apiserver fills in the CRD's defaults — the gateway keeps no copy of them.
 */
export function newEnvironmentSpec(req: CreateRequest, d: SpecDefaults): WaggleEnvironmentSpecInput {
  const t = req.template?.spec;
  const resources = t?.resources ?? {
    ...(d.cpus !== undefined ? { cpus: d.cpus } : {}),
    ...(d.memoryMiB !== undefined ? { memoryMiB: d.memoryMiB } : {}),
  };
  const choice = req.network ?? (t ? undefined : d.network);
  const network =
    t && !req.network && !req.allowDomains
      ? t.network
      : {
          ...(choice ? { egress: egressFor(choice) } : {}),
          ...(req.allowDomains?.length ? { allowDomains: req.allowDomains } : {}),
        };
  const idleAction = req.idleAction ?? d.idleAction;
  // A template's idle timeout longer than the gateway's maximum lifetime is cut to it (the API
  // refuses idleTimeout > maxLifetime).
  const idleTimeout = req.timeoutMinutes
    ? `${req.timeoutMinutes}m`
    : t?.idleTimeout
      ? parseDuration(t.idleTimeout) > d.maxLifetimeMs
        ? formatDuration(d.maxLifetimeMs)
        : t.idleTimeout
      : `${d.idleTimeoutMinutes}m`;
  return {
    runtime: t?.runtime ?? req.runtime,
    ...(t?.image ? { image: t.image } : {}),
    ...(req.template ? { template: req.template.metadata.name as string } : {}),
    ...(req.name ? { displayName: req.name } : {}),
    ...(Object.keys(resources).length ? { resources } : {}),
    idleTimeout,
    // Suspend needs maxLifetime (a CEL rule); the gateway always sets one.
    ...(idleAction ? { idleAction: idleActionFor(idleAction) } : {}),
    maxLifetime: formatDuration(d.maxLifetimeMs),
    ...(Object.keys(network).length ? { network } : {}),
  };
}
