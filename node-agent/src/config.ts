import { existsSync } from 'node:fs';
import { availableParallelism, hostname, totalmem } from 'node:os';
import {
  ACCELERATORS,
  CREATE_DEADLINE_DEFAULTS,
  durationMsSchema,
  hostPortSchema,
  logLevelSchema,
  parseEnvConfig,
  RUNTIMES,
  runtimeSchema,
} from '@waggle/crds';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { parseImageReference } from './images/image-reference.ts';
import { parseVMNetworkCidr } from './vm/network/subnets.ts';

const durationMs = durationMsSchema;
const hostPort = hostPortSchema;
const positiveInt = z.coerce.number().int().positive();
const cidr = (example: string) =>
  z.string().refine(
    (v) => {
      try {
        ipaddr.parseCIDR(v);
        return true;
      } catch {
        return false;
      }
    },
    { error: `use a CIDR, e.g. ${example}` },
  );
/** A comma-separated list (blanks dropped), each item checked by `item`. */
const list = (item: z.ZodString) =>
  z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(z.array(item));
const cidrList = list(cidr('203.0.113.0/24'));
/** A built-in runtime image: an ext4 file's absolute path, or an OCI image reference. */
const builtInImage = z.string().refine(
  (v) => {
    if (v.startsWith('/')) return true;
    try {
      parseImageReference(v);
      return true;
    } catch {
      return false;
    }
  },
  {
    error:
      'use an OCI image reference (registry/repository:tag or @sha256:…) or an absolute path to an ext4 root filesystem',
  },
);

const absolutePath = z.string().regex(/^\/[A-Za-z0-9._/-]+$/, {
  error: 'use an absolute path inside the guest, e.g. /opt/python/bin/python3',
});

/**
 * node-agent configuration, parsed once from the environment. Every variable, its default and
 * its meaning are listed in node-agent/README.md.
 */
export const configSchema = z.object({
  WAGGLE_NODE_NAME: z.string().min(1).default(hostname()),
  WAGGLE_AGENT_LISTEN: hostPort.default('127.0.0.1:7443'),
  WAGGLE_AGENT_OPS_LISTEN: hostPort.default('127.0.0.1:7444'),
  WAGGLE_AGENT_ENDPOINT: z.url().optional(),
  WAGGLE_STATE_DIR: z.string().min(1).default('/var/lib/waggle'),
  WAGGLE_ACCEL: z.enum(['auto', ...ACCELERATORS]).default('auto'),
  /** Each VM gets a /30 of it: the link between the node and the VM's network namespace. */
  WAGGLE_VM_NETWORK_CIDR: cidr('10.254.0.0/16')
    .refine(
      (v) => {
        try {
          parseVMNetworkCidr(v);
          return true;
        } catch {
          return false;
        }
      },
      { error: 'use an IPv4 CIDR between /8 and /29 with no host bits set, e.g. 10.254.0.0/16' },
    )
    .default('10.254.0.0/16'),
  /** Reachable from `egress: all` guests although inside a denied (private or special) range. */
  WAGGLE_EGRESS_ALLOW_CIDRS: cidrList,
  /** Denied on top of private/special ranges and the node's addresses: public pod/Service CIDRs. */
  WAGGLE_EGRESS_DENY_CIDRS: cidrList,
  /** Where the node's resolvers are listed (when WAGGLE_DNS_UPSTREAMS is unset). */
  WAGGLE_DNS_RESOLV_CONF: z
    .string()
    .regex(/^\//, { error: 'use an absolute path' })
    .default('/etc/resolv.conf'),
  /** Resolvers the guests' DNS is relayed to (default: the nameservers in WAGGLE_DNS_RESOLV_CONF). */
  WAGGLE_DNS_UPSTREAMS: z
    .string()
    .optional()
    .transform((v) =>
      v
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.union([z.ipv4(), z.ipv6()], { error: 'use IP addresses, e.g. 10.0.0.10' })).optional()),
  WAGGLE_MAX_VMS: positiveInt.default(8),
  /** Warm pool VMs booting at once on this node (bounds the refill rate; docs/adr/0014). */
  WAGGLE_WARM_BOOTS: positiveInt.default(1),
  /** Snapshot each template after its first cold boot and restore later creates from it (docs/adr/0014). */
  WAGGLE_SNAPSHOTS: z
    .enum(['true', 'false'], { error: 'use true or false' })
    .default('true')
    .transform((v) => v === 'true'),
  /** The most template snapshots kept on the node; the least recently restored go first. */
  WAGGLE_MAX_SNAPSHOTS: positiveInt.default(8),
  WAGGLE_CAPACITY_CPUS: positiveInt.default(availableParallelism() * 2),
  WAGGLE_CAPACITY_MEMORY_MIB: positiveInt.default(Math.floor((totalmem() / 1024 / 1024) * 0.75)),
  WAGGLE_TRUSTED_CA_BUNDLE: z
    .string()
    .default(existsSync('/etc/ssl/certs/ca-certificates.crt') ? '/etc/ssl/certs/ca-certificates.crt' : ''),
  /**
   * The built-in image of a runtime: an OCI image reference (pulled at start, e.g. from the
   * node's registry that `pnpm waggle up` runs) or an ext4 root filesystem's absolute path; unset:
   * built from the Debian mirror (images/guest/build.sh rootfs <runtime>).
   */
  WAGGLE_IMAGE_PYTHON: builtInImage.optional(),
  WAGGLE_IMAGE_NODE: builtInImage.optional(),
  WAGGLE_IMAGE_SHELL: builtInImage.optional(),
  /**
   * Registries or repository prefixes whose images CreateVM may run (`registry.example.com`,
   * `registry.example.com/team/`); empty (the default): no OCI images, only the built-in ones.
   */
  WAGGLE_IMAGE_ALLOW: list(
    z.string().regex(/^(\*|[a-z0-9.-]+(:[0-9]+)?(\/[a-z0-9._/-]*)?)$/, {
      error: 'use registries or repository prefixes, e.g. registry.example.com/team/ (or * for any image)',
    }),
  ),
  /** Registries reached over plain HTTP or without TLS verification (a registry on the node). */
  WAGGLE_IMAGE_INSECURE_REGISTRIES: list(
    z.string().regex(/^[a-z0-9.-]+(:[0-9]+)?$/, { error: 'use host[:port], e.g. 127.0.0.1:5000' }),
  ),
  /** Where pulled images are kept as root filesystems (default <WAGGLE_STATE_DIR>/images). */
  WAGGLE_IMAGE_CACHE_DIR: z.string().regex(/^\//, { error: 'use an absolute path' }).optional(),
  /** The image cache's bound: least recently used images not in use are removed beyond it. */
  WAGGLE_IMAGE_CACHE_MIB: positiveInt.default(20_480),
  /** The largest image accepted, compressed (before the pull) and unpacked. */
  WAGGLE_IMAGE_MAX_MIB: positiveInt.default(8_192),
  WAGGLE_GUEST_RUNTIMES: z
    .string()
    .default(RUNTIMES.join(','))
    .transform((v) => v.split(',').map((s) => s.trim()))
    .pipe(z.array(runtimeSchema).min(1)),
  WAGGLE_DEFAULT_EXEC_TIMEOUT: durationMs.default(30_000),
  WAGGLE_MAX_EXEC_TIMEOUT: durationMs.default(300_000),
  WAGGLE_INSTALL_TIMEOUT: durationMs.default(600_000),
  /**
   * QEMU started → guest ready; CreateVM fails when it passes. Shorter than the operator's
   * WAGGLE_CREATE_VM_TIMEOUT: see docs/reliability.md#timeouts-and-how-they-nest.
   */
  WAGGLE_BOOT_TIMEOUT: durationMs.default(CREATE_DEADLINE_DEFAULTS.guestBootMs),
  WAGGLE_HEARTBEAT_INTERVAL: durationMs.default(10_000),
  /** Register a WaggleNode: auto (when a kubeconfig or in-cluster config exists), true, false. */
  WAGGLE_REGISTER: z.enum(['auto', 'true', 'false']).default('auto'),
  WAGGLE_RUNTIME_PYTHON_EXEC_COMMAND: absolutePath.optional(),
  WAGGLE_RUNTIME_NODE_EXEC_COMMAND: absolutePath.optional(),
  WAGGLE_RUNTIME_SHELL_EXEC_COMMAND: absolutePath.optional(),
  /** Directory with tls.crt, tls.key (serving) and ca.crt (clients' CA): serve mutual TLS. */
  WAGGLE_AGENT_TLS_DIR: z.string().regex(/^\//, { error: 'use an absolute path' }).optional(),
  /** How often the TLS directory is re-read (the operator renews short-lived certificates). */
  WAGGLE_AGENT_TLS_RELOAD_INTERVAL: durationMs.default(30_000),
  /**
   * Request this node's serving certificate from the operator through a CSR with this signer name
   * (instead of WAGGLE_AGENT_TLS_DIR); needs WAGGLE_AGENT_CLIENT_CA_FILE.
   */
  WAGGLE_AGENT_CERT_SIGNER: z
    .string()
    .regex(/^[a-z0-9.-]+\/[a-z0-9.-]+$/, { error: 'use domain/name, e.g. waggle.dev/node-agent' })
    .optional(),
  /** The CA that signs operator and gateway certificates (the operator's published ca.crt). */
  WAGGLE_AGENT_CLIENT_CA_FILE: z.string().regex(/^\//, { error: 'use an absolute path' }).optional(),
  /** Where the CSR-issued key and certificate are kept (default <WAGGLE_STATE_DIR>/pki). */
  WAGGLE_AGENT_CERT_DIR: z.string().regex(/^\//, { error: 'use an absolute path' }).optional(),
  WAGGLE_GUEST_BUILD_SCRIPT: z.string().regex(/^\//, { error: 'use an absolute path' }).optional(),
  /** Move each QEMU out of the agent container's cgroups (into <root>/<hierarchy>/<name>). */
  WAGGLE_VM_CGROUP_ROOT: z
    .string()
    .regex(/^\//, { error: 'use an absolute path, e.g. /sys/fs/cgroup' })
    .optional(),
  WAGGLE_VM_CGROUP_NAME: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, { error: 'use a plain directory name, e.g. waggle-vms' })
    .default('waggle-vms'),
  LOG_LEVEL: logLevelSchema,
});
export type AgentConfig = z.output<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; throws one error listing every bad variable and how to fix it. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const c = parseEnvConfig(configSchema, env, 'node-agent', (m) => new ConfigError(m));
  if (c.WAGGLE_AGENT_CERT_SIGNER && (c.WAGGLE_AGENT_TLS_DIR || !c.WAGGLE_AGENT_CLIENT_CA_FILE)) {
    throw new ConfigError(
      'invalid node-agent configuration:\n  WAGGLE_AGENT_CERT_SIGNER needs WAGGLE_AGENT_CLIENT_CA_FILE and excludes WAGGLE_AGENT_TLS_DIR',
    );
  }
  return c;
}
