import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { parse } from 'yaml';
import { z } from 'zod';
import { AuthError } from '../errors.ts';
import { type Authenticator, type Caller, makeCaller } from './caller.ts';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The API keys file (mounted from a Secret). Each key maps to exactly one namespace. A key may be
 * given in clear (`key`, at least 24 characters) or as its SHA-256 (`sha256`, hex).
 */
export const apiKeysFileSchema = z.object({
  keys: z
    .array(
      z
        .object({
          name: z.string().regex(/^[A-Za-z0-9._-]{1,63}$/, { error: 'use letters, digits, ".", "_", "-"' }),
          namespace: z.string().max(63).regex(DNS_LABEL, { error: 'must be a Kubernetes namespace name' }),
          key: z.string().min(24, { error: 'API keys must be at least 24 characters' }).optional(),
          sha256: z
            .string()
            .regex(/^[0-9a-f]{64}$/, { error: 'must be 64 lowercase hex characters' })
            .optional(),
        })
        .refine((k) => (k.key === undefined) !== (k.sha256 === undefined), {
          error: 'give exactly one of "key" or "sha256"',
        }),
    )
    .default([]),
});

interface KeyEntry {
  name: string;
  namespace: string;
  digest: Buffer;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export function parseApiKeys(text: string, source: string): KeyEntry[] {
  const r = apiKeysFileSchema.safeParse(parse(text) ?? {});
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid API keys file ${source}:\n${lines.join('\n')}`);
  }
  const names = new Set<string>();
  return r.data.keys.map((k) => {
    if (names.has(k.name)) throw new Error(`invalid API keys file ${source}: duplicate key name "${k.name}"`);
    names.add(k.name);
    return {
      name: k.name,
      namespace: k.namespace,
      digest: k.key !== undefined ? sha256(k.key) : Buffer.from(k.sha256 as string, 'hex'),
    };
  });
}

/** Static API keys for clients outside the cluster; the file is re-read when it changes. */
export class ApiKeyAuthenticator implements Authenticator {
  readonly #path: string;
  #entries: KeyEntry[] = [];
  #mtimeMs = -1;

  constructor(path: string) {
    this.#path = path;
  }

  /** Loads the file; call once at start-up so a broken file stops the gateway with its message. */
  async load(): Promise<void> {
    const st = await stat(this.#path);
    this.#entries = parseApiKeys(await readFile(this.#path, 'utf8'), this.#path);
    this.#mtimeMs = st.mtimeMs;
  }

  async #refresh(): Promise<void> {
    const st = await stat(this.#path).catch(() => undefined);
    if (!st || st.mtimeMs === this.#mtimeMs) return;
    // A broken edit keeps the last good keys (and the next change is tried again).
    await this.load().catch(() => {
      this.#mtimeMs = st.mtimeMs;
    });
  }

  async authenticate(token: string, requestedNamespace: string | undefined): Promise<Caller | undefined> {
    await this.#refresh();
    const digest = sha256(token);
    const entry = this.#entries.find((e) => timingSafeEqual(e.digest, digest));
    if (!entry) return undefined;
    if (requestedNamespace !== undefined && requestedNamespace !== entry.namespace) {
      throw new AuthError(
        403,
        `API key "${entry.name}" is for namespace "${entry.namespace}", not "${requestedNamespace}"`,
      );
    }
    return makeCaller(`apikey:${entry.name}`, entry.namespace);
  }
}
