import {
  CREATE_DEADLINE_DEFAULTS,
  DURATION_LIMITS,
  durationMsSchema,
  hostPortSchema,
  logLevelSchema,
  parseDuration,
  parseEnvConfig,
  parseHostPort,
  RESOURCE_LIMITS,
  type RenamedVariable,
} from '@waggle/crds';
import { z } from 'zod';
import { IDLE_ACTION_CHOICES, NETWORK_CHOICES } from './services/environment-spec.ts';

const hostPort = hostPortSchema;
const positiveInt = z.coerce.number().int().positive();
const resource = (limits: { min: number; max: number }) =>
  z.coerce
    .number()
    .int()
    .min(limits.min, { error: `must be from ${limits.min} to ${limits.max} (the CRD's limits)` })
    .max(limits.max, { error: `must be from ${limits.min} to ${limits.max} (the CRD's limits)` });
const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

/**
 * mcp-gateway configuration, parsed once from the environment. Every variable, its default and
 * its meaning are listed in mcp-gateway/README.md (and the original Waggle's names are kept).
 */
export const gatewayConfigSchema = z.object({
  WAGGLE_LISTEN_ADDR: hostPort.default('127.0.0.1:8080'),
  /** Prometheus `/metrics`, on a listener of its own (never the public MCP port). */
  WAGGLE_METRICS_LISTEN: hostPort.default('127.0.0.1:9090'),
  /** kubernetes: ServiceAccount tokens (TokenReview + SubjectAccessReview) and API keys. */
  WAGGLE_AUTH_MODE: z.enum(['kubernetes', 'insecure']).default('kubernetes'),
  WAGGLE_API_KEYS_FILE: z.string().min(1).optional(),
  WAGGLE_TOKEN_AUDIENCES: list.optional(),
  WAGGLE_AUTH_CACHE_TTL: durationMsSchema.default(60_000),
  /** On SIGTERM, how long running tool calls may finish before they are stopped and answered. */
  WAGGLE_SHUTDOWN_GRACE: durationMsSchema.default(20_000),
  /** How long an accepted decision still stands while the apiserver cannot be asked ("0s": off). */
  WAGGLE_AUTH_STALE_ON_ERROR: durationMsSchema.default(600_000),
  /** How long a refused token (401) or a denied namespace (403) is remembered. */
  WAGGLE_AUTH_NEGATIVE_CACHE_TTL: durationMsSchema.default(10_000),
  /** Failed authentications one client address may cause per minute before it gets 429. */
  WAGGLE_AUTH_FAILURES_PER_MINUTE: positiveInt.default(30),
  /** TokenReviews per second for tokens not in the cache, all clients together. */
  WAGGLE_TOKEN_REVIEWS_PER_SECOND: positiveInt.default(20),
  WAGGLE_INSECURE_NAMESPACE: z.string().min(1).default('default'),
  WAGGLE_ALLOWED_HOSTS: list.optional(),
  WAGGLE_ALLOWED_ORIGINS: list.optional(),
  WAGGLE_WATCH_NAMESPACE: z.string().min(1).optional(),
  WAGGLE_MAX_ENVIRONMENTS: positiveInt.default(10),
  /** spec.resources of new environments; unset: the CRD's defaults (RESOURCE_LIMITS). */
  WAGGLE_DEFAULT_CPUS: resource(RESOURCE_LIMITS.cpus).optional(),
  WAGGLE_DEFAULT_MEMORY_MB: resource(RESOURCE_LIMITS.memoryMiB).optional(),
  WAGGLE_DEFAULT_TIMEOUT_MIN: positiveInt.default(
    parseDuration(DURATION_LIMITS.idleTimeout.default) / 60_000,
  ),
  /**
   * Guest network of a new environment when create_environment does not say: none | internet;
   * unset: the CRD's default (internet).
   */
  WAGGLE_DEFAULT_NETWORK: z.enum(NETWORK_CHOICES).optional(),
  /**
   * What happens to an idle environment when create_environment does not say: delete | suspend
   * (its VM is saved on the node; the next tool call resumes it). Unset: the CRD's default (delete).
   */
  WAGGLE_IDLE_ACTION: z.enum(IDLE_ACTION_CHOICES).optional(),
  /** How long a tool call on a suspended environment waits for it to resume. */
  WAGGLE_RESUME_WAIT_TIMEOUT: durationMsSchema.default(60_000),
  /** Longest an environment may live, however active (spec.maxLifetime); caps timeout_minutes. */
  WAGGLE_MAX_LIFETIME: durationMsSchema
    .refine((ms) => ms >= 60_000 && ms <= 168 * 3_600_000, {
      error: 'must be between 1m and 168h (the CRD allows maxLifetime up to 168h)',
    })
    .default(86_400_000),
  /** Base of preview URLs (e.g. https://waggle.example.com); default: the Host the client used. */
  WAGGLE_PUBLIC_URL: z
    .url({ protocol: /^https?$/, error: 'use an http(s) URL such as https://waggle.example.com' })
    .optional(),
  /** Longest a public preview URL may stay valid. */
  WAGGLE_PREVIEW_MAX_EXPIRY: durationMsSchema.default(86_400_000),
  WAGGLE_DEFAULT_EXEC_TIMEOUT: durationMsSchema.default(30_000),
  WAGGLE_MAX_EXEC_TIMEOUT: durationMsSchema.default(300_000),
  WAGGLE_INSTALL_TIMEOUT: durationMsSchema.default(600_000),
  /**
   * How long create_environment waits for Running before it deletes the environment and answers
   * isError (formerly WAGGLE_CREATE_TIMEOUT); see docs/reliability.md#timeouts-and-how-they-nest.
   */
  WAGGLE_CREATE_WAIT_TIMEOUT: durationMsSchema.default(CREATE_DEADLINE_DEFAULTS.createWaitMs),
  WAGGLE_UNSCHEDULABLE_GRACE: durationMsSchema.default(5_000),
  WAGGLE_ACTIVITY_INTERVAL: durationMsSchema.default(30_000),
  WAGGLE_SESSION_IDLE_TIMEOUT: durationMsSchema.default(1_800_000),
  /** Open MCP sessions, all callers together / one caller. */
  WAGGLE_MAX_SESSIONS: positiveInt.default(10_000),
  WAGGLE_MAX_SESSIONS_PER_CALLER: positiveInt.default(32),
  /** Tool calls one caller may have running at once (all its sessions together). */
  WAGGLE_MAX_CALLS_PER_CALLER: positiveInt.default(32),
  /** Longest a client may take to send a request's headers (an idle new connection included). */
  WAGGLE_HEADERS_TIMEOUT: durationMsSchema.default(10_000),
  /** Longest a client may take to send a whole request (headers and body); answers are not bounded. */
  WAGGLE_REQUEST_TIMEOUT: durationMsSchema.default(60_000),
  /** How long a kept-alive connection may sit idle between requests. */
  WAGGLE_KEEPALIVE_TIMEOUT: durationMsSchema.default(72_000),
  WAGGLE_MAX_FILE_BYTES: positiveInt.default(10 * 1024 * 1024),
  WAGGLE_MAX_OUTPUT_BYTES: positiveInt.default(1024 * 1024),
  /** Directory with ca.crt, tls.crt, tls.key: talk mutual TLS to node-agents. */
  WAGGLE_AGENT_TLS_DIR: z.string().regex(/^\//, { error: 'use an absolute path' }).optional(),
  WAGGLE_AGENT_TLS_RELOAD_INTERVAL: durationMsSchema.default(30_000),
  LOG_LEVEL: logLevelSchema,
});
export type GatewayConfig = z.output<typeof gatewayConfigSchema>;

/** Old names still read for one release (with a warning at start). */
export const GATEWAY_RENAMED_VARIABLES: readonly RenamedVariable[] = [
  { old: 'WAGGLE_CREATE_TIMEOUT', current: 'WAGGLE_CREATE_WAIT_TIMEOUT' },
];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; throws one error listing every bad variable and how to fix it. */
export function loadGatewayConfig(env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const c = parseEnvConfig(
    gatewayConfigSchema,
    env,
    'mcp-gateway',
    (m) => new ConfigError(m),
    GATEWAY_RENAMED_VARIABLES,
  );
  if (c.WAGGLE_DEFAULT_EXEC_TIMEOUT > c.WAGGLE_MAX_EXEC_TIMEOUT) {
    throw new ConfigError(
      'invalid mcp-gateway configuration:\n  WAGGLE_DEFAULT_EXEC_TIMEOUT must not exceed WAGGLE_MAX_EXEC_TIMEOUT',
    );
  }
  const cpus = c.WAGGLE_DEFAULT_CPUS ?? RESOURCE_LIMITS.cpus.default;
  const memoryMiB = c.WAGGLE_DEFAULT_MEMORY_MB ?? RESOURCE_LIMITS.memoryMiB.default;
  if (memoryMiB < cpus * RESOURCE_LIMITS.minMemoryMiBPerCpu) {
    throw new ConfigError(
      `invalid mcp-gateway configuration:\n  WAGGLE_DEFAULT_MEMORY_MB (${memoryMiB}) must be at least ${RESOURCE_LIMITS.minMemoryMiBPerCpu} per cpu (WAGGLE_DEFAULT_CPUS ${cpus})`,
    );
  }
  if (c.WAGGLE_DEFAULT_TIMEOUT_MIN * 60_000 > c.WAGGLE_MAX_LIFETIME) {
    throw new ConfigError(
      'invalid mcp-gateway configuration:\n  WAGGLE_DEFAULT_TIMEOUT_MIN must not exceed WAGGLE_MAX_LIFETIME',
    );
  }
  if (c.WAGGLE_HEADERS_TIMEOUT > c.WAGGLE_REQUEST_TIMEOUT) {
    throw new ConfigError(
      'invalid mcp-gateway configuration:\n  WAGGLE_HEADERS_TIMEOUT must not exceed WAGGLE_REQUEST_TIMEOUT',
    );
  }
  if (c.WAGGLE_MAX_SESSIONS_PER_CALLER > c.WAGGLE_MAX_SESSIONS) {
    throw new ConfigError(
      'invalid mcp-gateway configuration:\n  WAGGLE_MAX_SESSIONS_PER_CALLER must not exceed WAGGLE_MAX_SESSIONS',
    );
  }
  if (c.WAGGLE_AUTH_MODE === 'insecure' && !isLoopbackListen(c.WAGGLE_LISTEN_ADDR)) {
    throw new ConfigError(
      `invalid mcp-gateway configuration:\n  WAGGLE_AUTH_MODE=insecure is allowed only on a loopback address; ` +
        `WAGGLE_LISTEN_ADDR is ${c.WAGGLE_LISTEN_ADDR}. Use 127.0.0.1:<port>, or configure authentication.`,
    );
  }
  return c;
}

export function isLoopbackListen(addr: string): boolean {
  const { host } = parseHostPort(addr);
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
