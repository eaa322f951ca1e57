import { createConnection, type Socket } from 'node:net';

/** A QMP command failed (QEMU answered with an error), or the monitor went away. */
export class QmpError extends Error {
  override name = 'QmpError';
  /** QEMU's error class (`GenericError`, `CommandNotFound`, …), or `Disconnected` / `Timeout`. */
  readonly errorClass: string;
  constructor(errorClass: string, message: string) {
    super(message);
    this.errorClass = errorClass;
  }
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** A QMP line longer than this is a broken (or hostile: QEMU runs guest-driven code) monitor. */
export const QMP_MAX_LINE_BYTES = 1 << 20;

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

/**
 * A minimal client of the QEMU Machine Protocol over a unix socket: newline-delimited JSON,
 * greeting, `qmp_capabilities`, commands matched to answers by id, events to listeners. No npm
 * package for QMP is maintained; the protocol is small (docs/interop/qmp-spec in QEMU).
 */
export class QmpClient {
  readonly #sock: Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<(e: QmpEvent) => void>();
  #nextId = 1;
  #buf = '';
  #closed: QmpError | undefined;
  #greeting: ((v: unknown) => void) | undefined;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.#onData(chunk));
    sock.on('error', (err) => this.#fail(new QmpError('Disconnected', `QMP socket: ${err.message}`)));
    sock.on('close', () => this.#fail(new QmpError('Disconnected', 'QMP socket closed')));
  }

  /** Connects, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, opts: { timeoutMs?: number } = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 5_000;
    const sock = createConnection(path);
    const client = new QmpClient(sock);
    const greeting = new Promise((resolve, reject) => {
      client.#greeting = resolve;
      const timer = setTimeout(
        () => reject(new QmpError('Timeout', `no QMP greeting within ${timeoutMs} ms`)),
        timeoutMs,
      );
      client.#pending.set(0, { resolve, reject, timer });
    });
    try {
      await greeting;
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Runs a command; resolves with its `return` value, rejects with QmpError. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new QmpError('Timeout', `QMP ${command}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.#sock.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /** Calls `fn` for each asynchronous event; returns the unsubscribe function. */
  onEvent(fn: (e: QmpEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  close(): void {
    this.#sock.destroy();
    this.#fail(new QmpError('Disconnected', 'QMP client closed'));
  }

  #onData(chunk: string): void {
    this.#buf += chunk;
    if (this.#buf.length > QMP_MAX_LINE_BYTES && !this.#buf.includes('\n')) {
      this.#fail(new QmpError('Protocol', `QMP line longer than ${QMP_MAX_LINE_BYTES} bytes`));
      this.#sock.destroy();
      return;
    }
    let nl = this.#buf.indexOf('\n');
    while (nl >= 0) {
      const line = this.#buf.slice(0, nl).trim();
      this.#buf = this.#buf.slice(nl + 1);
      if (line) this.#onMessage(line);
      nl = this.#buf.indexOf('\n');
    }
  }

  #onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#fail(new QmpError('Protocol', 'QMP sent a line that is not JSON'));
      this.#sock.destroy();
      return;
    }
    if (typeof msg !== 'object' || msg === null) return;
    if ('QMP' in msg && this.#greeting) {
      const p = this.#pending.get(0);
      this.#pending.delete(0);
      if (p) clearTimeout(p.timer);
      this.#greeting(msg.QMP);
      this.#greeting = undefined;
      return;
    }
    if (typeof msg.event === 'string') {
      for (const fn of this.#listeners) fn(msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'number' ? msg.id : undefined;
    const p = id === undefined ? undefined : this.#pending.get(id);
    if (!p || id === undefined) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if ('error' in msg) {
      const e = (msg.error ?? {}) as { class?: unknown; desc?: unknown };
      p.reject(new QmpError(String(e.class ?? 'GenericError'), String(e.desc ?? 'QMP error')));
    } else {
      p.resolve(msg.return);
    }
  }

  #fail(err: QmpError): void {
    if (this.#closed) return;
    this.#closed = err;
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this.#pending.delete(id);
    }
  }
}
