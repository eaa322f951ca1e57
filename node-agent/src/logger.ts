import { type DestinationStream, type Logger, pino } from 'pino';

/** Environments remembered at most (vmId → envId); the oldest is forgotten beyond. */
export const MAX_REMEMBERED_ENV_IDS = 4_096;

/**
 * Which environment each VM belongs to, as the callers named it (the `waggle-env-id` header; see
 * env-id.ts): for logs only. Learned from every call that names both a VM and its environment,
 * so lines about a VM logged outside a request (it exited, its SSH connection dropped, also
 * after DestroyVM answered) carry the environment's id too — after a restart, once the operator
 * or the gateway called about it. VM ids (UIDs) are not reused: an entry is only dropped as the
 * oldest beyond the bound.
 */
export class EnvIds {
  readonly #byVm = new Map<string, string>();
  readonly #max: number;

  constructor(max = MAX_REMEMBERED_ENV_IDS) {
    this.#max = max;
  }

  remember(vmId: string, envId: string): void {
    if (!vmId) return;
    this.#byVm.delete(vmId);
    this.#byVm.set(vmId, envId);
    if (this.#byVm.size > this.#max) this.#byVm.delete(this.#byVm.keys().next().value as string);
  }

  get(vmId: string): string | undefined {
    return this.#byVm.get(vmId);
  }
}

/**
 * The agent's root logger: JSON lines on stdout, constant messages with structured fields. With
 * `envIds`, every line about a VM (a `vmId` field or binding) whose environment is known carries
 * `envId` as well.
 */
export function createLogger(
  opts: { level?: string; name?: string; envIds?: EnvIds; destination?: DestinationStream } = {},
): Logger {
  const envIds = opts.envIds;
  const options = {
    name: opts.name ?? 'node-agent',
    level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
    ...(envIds
      ? { mixin: (fields: object, _level: number, log: Logger) => envIdField(envIds, fields, log) }
      : {}),
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

function envIdField(envIds: EnvIds, fields: object, log: Logger): { envId?: string } {
  const f = fields as { vmId?: unknown; envId?: unknown };
  if (f.envId !== undefined) return {};
  let vmId = f.vmId;
  if (typeof vmId !== 'string') {
    const bound = log.bindings() as { vmId?: unknown; envId?: unknown };
    if (bound.envId !== undefined) return {};
    vmId = bound.vmId;
  }
  const envId = typeof vmId === 'string' && vmId ? envIds.get(vmId) : undefined;
  return envId ? { envId } : {};
}
