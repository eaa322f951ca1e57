import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from 'pino';
import type { Caller } from '../auth/caller.ts';
import { ConcurrencyLimiter } from '../auth/rate-limit.ts';

interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  caller: Caller;
  lastUsed: number;
  /** Gives the caller's session slot back. */
  release: () => void;
}

export interface SessionOptions {
  newServer: (caller: Caller) => McpServer;
  idleTimeoutMs: number;
  /** Open sessions, all callers together (503 beyond) / one caller (429 beyond). */
  maxSessions: number;
  maxSessionsPerCaller: number;
  log: Logger;
  /** True while the gateway shuts down: new sessions get 503 (clients retry elsewhere). */
  draining?: () => boolean;
}

const jsonRpcError = (res: ServerResponse, status: number, code: number, message: string) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
};

/**
 * Streamable HTTP sessions, each with its own McpServer bound to the caller who initialized it.
 * Every request is authenticated again and must come from that same caller; otherwise the
 * session "does not exist" (404), so a leaked session id is useless to anyone else. Idle
 * sessions are closed after `idleTimeoutMs`.
 */
export class SessionRegistry {
  readonly #sessions = new Map<string, Session>();
  readonly #o: SessionOptions;
  readonly #sweeper: NodeJS.Timeout;
  readonly #perCaller: ConcurrencyLimiter;

  constructor(opts: SessionOptions) {
    this.#o = opts;
    this.#perCaller = new ConcurrencyLimiter(opts.maxSessionsPerCaller);
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(60_000, opts.idleTimeoutMs));
    this.#sweeper.unref();
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** Sessions the caller has open (or opening). */
  sessionsOf(caller: Caller): number {
    return this.#perCaller.active(caller.principal);
  }

  async handle(req: IncomingMessage, res: ServerResponse, body: unknown, caller: Caller): Promise<void> {
    const header = req.headers['mcp-session-id'];
    const id = Array.isArray(header) ? header[0] : header;
    if (id !== undefined) {
      const s = this.#sessions.get(id);
      if (!s || s.caller.principal !== caller.principal || s.caller.namespace !== caller.namespace) {
        return jsonRpcError(res, 404, -32001, 'Session not found: initialize a new session');
      }
      s.lastUsed = Date.now();
      return s.transport.handleRequest(req, res, body);
    }
    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      return jsonRpcError(
        res,
        400,
        -32000,
        'Bad Request: no Mcp-Session-Id header; start with an initialize request',
      );
    }
    if (this.#o.draining?.()) {
      res.setHeader('Retry-After', '2');
      return jsonRpcError(
        res,
        503,
        -32000,
        'the gateway is restarting and opens no new sessions; retry in a few seconds',
      );
    }
    if (this.#sessions.size >= this.#o.maxSessions) {
      return jsonRpcError(
        res,
        503,
        -32000,
        `the gateway has ${this.#sessions.size} open MCP sessions, the most it keeps (WAGGLE_MAX_SESSIONS); try again later`,
      );
    }
    const release = this.#perCaller.tryAcquire(caller.principal);
    if (!release) {
      return jsonRpcError(
        res,
        429,
        -32000,
        `${caller.principal} already has ${this.#o.maxSessionsPerCaller} open MCP sessions, the most one caller ` +
          'may have (WAGGLE_MAX_SESSIONS_PER_CALLER); close sessions you no longer use (an MCP client ' +
          `sends DELETE /mcp when it closes) or wait until idle ones expire (after ${Math.round(this.#o.idleTimeoutMs / 60_000)} min without a request)`,
      );
    }
    const server = this.#o.newServer(caller);
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sid) => {
        this.#sessions.set(sid, { transport, server, caller, lastUsed: Date.now(), release });
        this.#o.log.debug({ session: sid, caller: caller.principal }, 'session opened');
      },
      onsessionclosed: (sid) => {
        this.#sessions.delete(sid);
        release();
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) this.#sessions.delete(transport.sessionId);
      release();
    };
    await server.connect(transport);
    try {
      await transport.handleRequest(req, res, body);
    } finally {
      // The initialize was refused (e.g. a bad protocol version): no session, no slot.
      if (!transport.sessionId || !this.#sessions.has(transport.sessionId)) {
        release();
        void server.close().catch(() => undefined);
      }
    }
  }

  #sweep(now = Date.now()): void {
    for (const [sid, s] of this.#sessions) {
      if (now - s.lastUsed > this.#o.idleTimeoutMs) {
        this.#sessions.delete(sid);
        s.release();
        void s.server.close().catch(() => undefined);
        this.#o.log.debug({ session: sid }, 'idle session closed');
      }
    }
  }

  async closeAll(): Promise<void> {
    clearInterval(this.#sweeper);
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const s of all) s.release();
    await Promise.all(all.map((s) => s.server.close().catch(() => undefined)));
  }
}
