import type { Logger } from 'pino';
import ssh2, { type Client } from 'ssh2';
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

/** One persistent SSH connection per VM, opened on first use and re-opened after it drops. */
export class GuestConnections {
  readonly #resolve: (vmId: string) => Promise<GuestEndpoint>;
  readonly #log: Logger;
  readonly #conns = new Map<string, Promise<Client>>();
  readonly #readyTimeoutMs: number;

  constructor(opts: {
    resolve: (vmId: string) => Promise<GuestEndpoint>;
    log: Logger;
    readyTimeoutMs?: number;
  }) {
    this.#resolve = opts.resolve;
    this.#log = opts.log;
    this.#readyTimeoutMs = opts.readyTimeoutMs ?? 15_000;
  }

  get(vmId: string): Promise<Client> {
    let conn = this.#conns.get(vmId);
    if (!conn) {
      conn = this.#connect(vmId);
      this.#conns.set(vmId, conn);
      conn.catch(() => this.#conns.delete(vmId));
    }
    return conn;
  }

  async #connect(vmId: string): Promise<Client> {
    const ep = await this.#resolve(vmId);
    const expected = publicKeyBlob(ep.hostPublicKey);
    const client = new ssh2.Client();
    return new Promise<Client>((resolve, reject) => {
      const fail = (err: Error) =>
        reject(new GuestUnavailableError(`cannot reach VM ${vmId} over SSH: ${err.message}`));
      client.once('ready', () => {
        client.off('error', fail);
        client.on('error', (err) => this.#log.warn({ vmId, err: err.message }, 'ssh connection error'));
        client.once('close', () => this.#conns.delete(vmId));
        resolve(client);
      });
      client.once('error', fail);
      client.connect({
        host: ep.host,
        port: ep.port,
        username: ep.username,
        privateKey: ep.privateKey,
        readyTimeout: this.#readyTimeoutMs,
        keepaliveInterval: 15_000,
        hostVerifier: (key: Buffer) => key.equals(expected),
      });
    });
  }

  close(vmId: string): void {
    const conn = this.#conns.get(vmId);
    this.#conns.delete(vmId);
    void conn?.then((c) => c.end()).catch(() => undefined);
  }

  closeAll(): void {
    for (const id of [...this.#conns.keys()]) this.close(id);
  }
}

/** Runs a command on a connection and collects its output (for short agent-side helpers). */
export function runCommand(
  client: Client,
  command: string,
  stdin?: Buffer,
): Promise<{ stdout: Buffer; stderr: Buffer; code: number | null; signal?: string }> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, stream) => {
      if (err) return reject(new GuestUnavailableError(`cannot open an SSH channel: ${err.message}`));
      const out: Buffer[] = [];
      const errOut: Buffer[] = [];
      stream.on('data', (d: Buffer) => out.push(d));
      stream.stderr.on('data', (d: Buffer) => errOut.push(d));
      stream.once('close', (code: number | null, signal?: string) =>
        resolve({
          stdout: Buffer.concat(out),
          stderr: Buffer.concat(errOut),
          code,
          ...(signal ? { signal } : {}),
        }),
      );
      stream.end(stdin);
    });
  });
}
