import type { Logger } from 'pino';
import ssh2, { type Client, type ClientChannel } from 'ssh2';
import { GuestUnavailableError } from '../errors.ts';
import { publicKeyBlob } from '../vm/keys.ts';

export interface GuestEndpoint {
  host: string;
  port: number;
  username: string;
  privateKey: string;
  /** OpenSSH public host key the guest must present (pinned; no trust on first use). */
  hostPublicKey: string;
}

/** After a failed connect the next attempt waits 0.5 s, doubling up to 10 s; a success resets it. */
export const RECONNECT_BACKOFF_MS = { min: 500, max: 10_000 } as const;

/** The user each connection made by GuestConnections logged in as (files chown only for root). */
const connectionUsers = new WeakMap<Client, string>();
export const connectionUser = (client: Client): string | undefined => connectionUsers.get(client);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * Persistent SSH connections, one per VM and user, opened on first use and re-opened after they
 * drop. The guest is untrusted: every error of a connection is handled (a connection that fails
 * rejects only the calls waiting for it, with a GuestUnavailableError naming the VM), a connect is
 * bounded in time, and reconnects after failures back off so a broken guest cannot cause a loop.
 */
export class GuestConnections {
  readonly #resolve: (vmId: string) => Promise<GuestEndpoint>;
  readonly #log: Logger;
  readonly #conns = new Map<string, { vmId: string; conn: Promise<Client> }>();
  /** Reconnect back-off per connection key: when the next attempt may start. */
  readonly #backoff = new Map<string, { failures: number; notBefore: number }>();
  readonly #readyTimeoutMs: number;
  readonly #adopt: ((vmId: string, username: string) => Client | undefined) | undefined;

  constructor(opts: {
    resolve: (vmId: string) => Promise<GuestEndpoint>;
    log: Logger;
    readyTimeoutMs?: number;
    /**
     * A ready connection someone else opened to the VM as `username` (the VM manager's, after a
     * restore), taken over instead of opening one: saves a handshake on the first call.
     */
    adopt?: (vmId: string, username: string) => Client | undefined;
  }) {
    this.#adopt = opts.adopt;
    this.#resolve = opts.resolve;
    this.#log = opts.log;
    this.#readyTimeoutMs = opts.readyTimeoutMs ?? 15_000;
  }

  /**
   * The connection to a VM as `username` (default: the endpoint's user), opened if needed. Rejects
   * with GuestUnavailableError when the guest cannot be reached.
   */
  get(vmId: string, username?: string): Promise<Client> {
    const key = `${username ?? ''}@${vmId}`;
    const existing = this.#conns.get(key);
    if (existing) return existing.conn;
    const entry = {
      vmId,
      conn: this.#connect(key, vmId, username, () => {
        if (this.#conns.get(key) === entry) this.#conns.delete(key);
      }),
    };
    this.#conns.set(key, entry);
    entry.conn.catch(() => {
      if (this.#conns.get(key) === entry) this.#conns.delete(key);
    });
    return entry.conn;
  }

  #noteFailure(key: string, countAsFailure: boolean): void {
    const failures = (this.#backoff.get(key)?.failures ?? 0) + (countAsFailure ? 1 : 0);
    const delay = Math.min(
      RECONNECT_BACKOFF_MS.min * 2 ** Math.max(0, failures - 1),
      RECONNECT_BACKOFF_MS.max,
    );
    this.#backoff.set(key, { failures, notBefore: Date.now() + delay });
  }

  async #connect(
    key: string,
    vmId: string,
    username: string | undefined,
    onDrop: () => void,
  ): Promise<Client> {
    const wait = (this.#backoff.get(key)?.notBefore ?? 0) - Date.now();
    if (wait > 0) await sleep(wait);
    const ep = await this.#resolve(vmId);
    const user = username ?? ep.username;
    const adopted = this.#adopt?.(vmId, user);
    if (adopted) {
      adopted.on('error', (err: Error) => {
        this.#log.warn({ vmId, user, err: err.message }, 'ssh connection error; dropping it');
        onDrop();
        adopted.destroy();
      });
      adopted.on('close', () => {
        this.#log.info({ vmId, user }, 'ssh connection closed');
        this.#noteFailure(key, false);
        onDrop();
      });
      connectionUsers.set(adopted, user);
      return adopted;
    }
    const expected = publicKeyBlob(ep.hostPublicKey);
    const client = new ssh2.Client();
    return new Promise<Client>((resolve, reject) => {
      let ready = false;
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        this.#noteFailure(key, true);
        client.destroy();
        this.#log.warn({ vmId, user, err: err.message }, 'ssh connect failed');
        reject(new GuestUnavailableError(`cannot reach VM ${vmId} over SSH: ${err.message}`));
      };
      // readyTimeout bounds the handshake; this also bounds everything before it.
      const guard = setTimeout(
        () => fail(new Error(`no SSH session within ${this.#readyTimeoutMs + 5_000} ms`)),
        this.#readyTimeoutMs + 5_000,
      );
      guard.unref();
      // A permanent listener: ssh2 can emit several errors for one connection (a reset socket
      // emits its error and then "Connection lost before handshake"); an unhandled one would
      // take the whole agent down.
      client.on('error', (err: Error) => {
        if (!ready) return fail(err);
        this.#log.warn({ vmId, user, err: err.message }, 'ssh connection error; dropping it');
        onDrop();
        client.destroy();
      });
      client.on('close', () => {
        if (!ready) return fail(new Error('connection closed before the SSH session was ready'));
        this.#log.info({ vmId, user }, 'ssh connection closed');
        // A connection that drops right after opening must not make a tight reconnect loop.
        this.#noteFailure(key, false);
        onDrop();
      });
      client.once('ready', () => {
        if (settled) {
          client.end();
          return;
        }
        ready = true;
        settled = true;
        clearTimeout(guard);
        this.#backoff.delete(key);
        connectionUsers.set(client, user);
        resolve(client);
      });
      try {
        client.connect({
          host: ep.host,
          port: ep.port,
          username: user,
          privateKey: ep.privateKey,
          readyTimeout: this.#readyTimeoutMs,
          keepaliveInterval: 15_000,
          hostVerifier: (key: Buffer) => key.equals(expected),
        });
      } catch (err) {
        fail(err as Error);
      }
    });
  }

  /** Closes every connection to a VM (all users). */
  close(vmId: string): void {
    for (const [key, entry] of [...this.#conns]) {
      if (entry.vmId !== vmId) continue;
      this.#conns.delete(key);
      this.#backoff.delete(key);
      void entry.conn.then((c) => c.end()).catch(() => undefined);
    }
    for (const key of [...this.#backoff.keys()]) if (key.endsWith(`@${vmId}`)) this.#backoff.delete(key);
  }

  closeAll(): void {
    for (const entry of new Set([...this.#conns.values()].map((e) => e.vmId))) this.close(entry);
  }
}

/** Opens an exec channel; the failure to open one (or a dead connection) is a GuestUnavailableError. */
export function openExec(client: Client, command: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(command, (err, stream) => {
        if (err) return reject(new GuestUnavailableError(`cannot open an SSH channel: ${err.message}`));
        resolve(stream);
      });
    } catch (err) {
      reject(new GuestUnavailableError(`cannot open an SSH channel: ${(err as Error).message}`));
    }
  });
}

/**
 * Runs a command on a connection and collects its output (for short agent-side helpers). With
 * `timeoutMs`, a command still running then has its channel closed and the call rejects.
 */
export async function runCommand(
  client: Client,
  command: string,
  stdin?: Buffer,
  opts: { timeoutMs?: number } = {},
): Promise<{ stdout: Buffer; stderr: Buffer; code: number | null; signal?: string }> {
  const stream = await openExec(client, command);
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    let settled = false;
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            if (settled) return;
            settled = true;
            stream.destroy();
            reject(new GuestUnavailableError(`guest command did not finish within ${opts.timeoutMs} ms`));
          }, opts.timeoutMs);
    const onError = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new GuestUnavailableError(`SSH channel failed: ${err.message}`));
    };
    stream.on('error', onError);
    stream.stderr.on('error', onError);
    stream.on('data', (d: Buffer) => out.push(d));
    stream.stderr.on('data', (d: Buffer) => errOut.push(d));
    stream.once('close', (code: number | null, signal?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(errOut),
        code: code ?? null,
        ...(signal ? { signal } : {}),
      });
    });
    stream.end(stdin);
  });
}
