// The words every component shares, defined once: the API's runtimes, egress modes, resource
// limits and accelerators, and the configuration vocabulary (log levels, listen addresses). The
// CRD schemas are built from these; the node-agent, operator and gateway import them instead of
// spelling them again.
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';

/** Language runtimes an environment can have (`spec.runtime`, a WaggleNode's `status.runtimes`). */
export const RUNTIMES = ['python', 'node', 'shell'] as const;
export const runtimeSchema = z.enum(RUNTIMES);
export type Runtime = z.output<typeof runtimeSchema>;

/**
 * Outbound network access of a guest (`spec.network.egress`): `all` is the internet (never the
 * node or private ranges), `none` nothing at all.
 */
export const EGRESS_MODES = ['none', 'all'] as const;
export const egressModeSchema = z.enum(EGRESS_MODES);
export type EgressMode = z.output<typeof egressModeSchema>;
/** What an environment gets when its spec does not say (the CRD default). */
export const DEFAULT_EGRESS: EgressMode = 'all';

/** `example.org` or `*.example.net`: a domain name, optionally with a leading wildcard label. */
export const ALLOW_DOMAIN_PATTERN =
  /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const MAX_ALLOW_DOMAINS = 64;

/** Limits a single environment may request. Per-node capacity is enforced by scheduling. */
export const RESOURCE_LIMITS = {
  cpus: { min: 1, max: 8, default: 1 },
  memoryMiB: { min: 128, max: 32768, default: 512 },
  diskMiB: { min: 512, max: 65536, default: 2048 },
  /** Each vCPU needs at least this much memory. */
  minMemoryMiBPerCpu: 128,
} as const;

/** Hypervisor acceleration of a node: hardware (`kvm`) or software emulation (`tcg`). */
export const ACCELERATORS = ['kvm', 'tcg'] as const;
export const acceleratorSchema = z.enum(ACCELERATORS);
export type Accelerator = z.output<typeof acceleratorSchema>;

/** pino's levels, as every component's `LOG_LEVEL` takes them. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** `LOG_LEVEL`: one of LOG_LEVELS, `info` when unset. */
export const logLevelSchema = z.enum(LOG_LEVELS).default('info');
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * A listen address: `host:port` where host is a DNS name, an IPv4 address or an IPv6 address in
 * brackets (`[::1]:7443`), and port 0–65535 (0: any free port).
 */
export const HOST_PORT_PATTERN =
  /^(?:(?<name>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)|\[(?<ipv6>[0-9A-Fa-f:.]+)\]):(?<port>\d{1,5})$/;

export interface HostPort {
  /** Without brackets: `::1`, `127.0.0.1`, `localhost`. */
  host: string;
  port: number;
}

export class InvalidHostPortError extends Error {
  override name = 'InvalidHostPortError';
  readonly address: string;
  constructor(address: string) {
    super(`"${address}" is not host:port; use e.g. 127.0.0.1:8080 or [::1]:8080`);
    this.address = address;
  }
}

/** Splits a listen address; undefined when it is not one (see HOST_PORT_PATTERN). */
export function tryParseHostPort(address: string): HostPort | undefined {
  const m = HOST_PORT_PATTERN.exec(address);
  if (!m?.groups) return undefined;
  const { name, ipv6, port: portText } = m.groups;
  const port = Number(portText);
  if (port > 65_535) return undefined;
  if (ipv6 !== undefined) return isIPv6(ipv6) ? { host: ipv6, port } : undefined;
  const host = name as string;
  // All digits and dots: an IPv4 address, which must be a valid one.
  if (/^[\d.]+$/.test(host) && !isIPv4(host)) return undefined;
  return { host, port };
}

/** Splits a listen address (already checked by hostPortSchema); throws InvalidHostPortError. */
export function parseHostPort(address: string): HostPort {
  const hp = tryParseHostPort(address);
  if (!hp) throw new InvalidHostPortError(address);
  return hp;
}

/** A `host:port` listen address in configuration; kept as the string, split with parseHostPort. */
export const hostPortSchema = z.string().refine((v) => tryParseHostPort(v) !== undefined, {
  error: 'use host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (IPv6 in brackets)',
});
