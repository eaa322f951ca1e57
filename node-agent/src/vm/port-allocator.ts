import { createServer } from 'node:net';

/** True when a listener can bind host:port right now. */
export function canBind(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/**
 * Hands out loopback ports for SSH forwards from a fixed range. A port is given out only if it
 * is not reserved by another VM of this agent and a bind on it succeeds (nothing else uses it).
 */
export class PortAllocator {
  readonly #from: number;
  readonly #to: number;
  readonly #reserved = new Set<number>();
  #next: number;

  constructor(range: { from: number; to: number }) {
    if (range.from > range.to) throw new RangeError(`empty port range ${range.from}-${range.to}`);
    this.#from = range.from;
    this.#to = range.to;
    this.#next = range.from;
  }

  /** Marks a port as used (e.g. by a re-adopted VM). */
  reserve(port: number): void {
    this.#reserved.add(port);
  }

  release(port: number): void {
    this.#reserved.delete(port);
  }

  async allocate(): Promise<number> {
    const size = this.#to - this.#from + 1;
    for (let i = 0; i < size; i++) {
      const port = this.#next;
      this.#next = port >= this.#to ? this.#from : port + 1;
      if (this.#reserved.has(port)) continue;
      this.#reserved.add(port); // claim before the async check so concurrent calls differ
      if (await canBind(port)) return port;
      this.#reserved.delete(port);
    }
    throw new Error(`no free port in ${this.#from}-${this.#to} for an SSH forward`);
  }
}
