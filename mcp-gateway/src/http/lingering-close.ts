import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** How long a refused client may keep sending after its answer before the socket is destroyed. */
export const LINGER_MS = 2_000;
/** Beyond this many lingering connections, a refusal closes at once (a flood of refusals costs no more). */
export const MAX_LINGERING = 256;

/** Connections answered with a refusal: nothing more is served on them, whatever they send. */
const closing = new WeakSet<Socket>();
let lingeringNow = 0;

/**
 * Whether this connection carries a refusal: a request pipelined behind it (parsed in the same
 * read, before the refusal was even decided) or an upgrade sent while it lingers must not be
 * served. Checked before every side effect.
 */
export const isClosing = (socket: Socket | null | undefined): boolean => !!socket && closing.has(socket);

/** A request that still has a body on the wire (which a refusal must not wait for). */
export const hasBody = (req: IncomingMessage): boolean =>
  req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;

/**
 * Answers a request whose body the server will not read, then closes the connection the way
 * nginx's `lingering_close` does: the answer goes out with `Connection: close` and a FIN, and
 * whatever the client is still sending is read and dropped for at most `lingerMs` (less if the
 * client closes first), then the socket is destroyed.
 *
 * Destroying the socket while the client is still writing (Node's default after a
 * `Connection: close` answer) closes it with unread bytes in the kernel's receive buffer: the
 * kernel answers with a reset, and a client that is still sending usually loses the answer too —
 * it sees `ECONNRESET` instead of "413: body too large" or "401: token expired". Lingering costs
 * at most `lingerMs` of reading (parsed and dropped) per refused connection, for at most
 * `MAX_LINGERING` connections at once; nothing is buffered.
 */
export function closeAfterReply(req: IncomingMessage, res: ServerResponse, lingerMs = LINGER_MS): void {
  res.setHeader('connection', 'close');
  const socket = req.socket as Socket & { destroySoon?: () => void };
  closing.add(socket);
  let lingering = false;
  const linger = () => {
    if (lingering) return;
    lingering = true;
    if (lingeringNow >= MAX_LINGERING) return void socket.destroy();
    lingeringNow += 1;
    if (socket.writable) socket.end();
    req.resume(); // drop the rest of the body (fastify may have stopped reading mid-body)
    const timer = setTimeout(() => socket.destroy(), lingerMs);
    timer.unref();
    socket.once('close', () => {
      clearTimeout(timer);
      lingeringNow -= 1;
    });
  };
  // Node ends a `Connection: close` response with `socket.destroySoon()` (end, then destroy as
  // soon as the FIN is written); on this socket that becomes the bounded linger above. The
  // 'finish' listener covers a Node that would only call `end()`.
  socket.destroySoon = linger;
  res.once('finish', linger);
}
