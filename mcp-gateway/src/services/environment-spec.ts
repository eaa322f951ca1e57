import { type EgressMode, formatDuration, type Runtime, type WaggleEnvironmentSpecInput } from '@waggle/crds';

/** What a caller may ask for: no network, or the internet (never the node or private ranges). */
export const NETWORK_CHOICES = ['none', 'internet'] as const;
export type NetworkChoice = (typeof NETWORK_CHOICES)[number];

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
}

/** What the gateway's configuration sets on every new environment; unset: the CRD's default. */
export interface SpecDefaults {
  cpus?: number;
  memoryMiB?: number;
  /** Guest network when the caller does not say (WAGGLE_DEFAULT_NETWORK). */
  network?: NetworkChoice;
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
  const resources = {
    ...(d.cpus !== undefined ? { cpus: d.cpus } : {}),
    ...(d.memoryMiB !== undefined ? { memoryMiB: d.memoryMiB } : {}),
  };
  const choice = req.network ?? d.network;
  const network = {
    ...(choice ? { egress: egressFor(choice) } : {}),
    ...(req.allowDomains?.length ? { allowDomains: req.allowDomains } : {}),
  };
  return {
    runtime: req.runtime,
    ...(req.name ? { displayName: req.name } : {}),
    ...(Object.keys(resources).length ? { resources } : {}),
    idleTimeout: `${req.timeoutMinutes ?? d.idleTimeoutMinutes}m`,
    maxLifetime: formatDuration(d.maxLifetimeMs),
    ...(Object.keys(network).length ? { network } : {}),
  };
}
