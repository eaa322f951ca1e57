import { Duplex } from 'node:stream';
import type { ForwardPortRequest, ForwardPortResponse, PortTarget } from '@waggle/node-agent/client';

type MessageInit<T> = Omit<T, '$typeName' | '$unknown'>;
type OpenStream = (
  requests: AsyncIterable<MessageInit<ForwardPortRequest> | ForwardPortRequest>,
  signal: AbortSignal,
) => AsyncIterable<ForwardPortResponse>;

/**
 * A byte stream (Duplex) over the node-agent's ForwardPort bidi stream: resolves once the guest
 * accepted the connection, rejects with the agent's error (e.g. nothing listens on the port).
 * Backpressure holds both ways: a write completes only once the RPC took the chunk, and the
 * response stream is not read further while the consumer does not read.
 */
export async function openTunnel(
  open: OpenStream,
  target: Omit<PortTarget, '$typeName'>,
  /** Gives up opening (the caller left, or a deadline): the call is cancelled. */
  signal?: AbortSignal,
): Promise<Duplex> {
  const abort = new AbortController();
  const onGiveUp = () => abort.abort(signal?.reason);
  signal?.addEventListener('abort', onGiveUp, { once: true });
  let pending: { data: Uint8Array; done: (err?: Error | null) => void } | undefined;
  let ended = false;
  let wakeWriter: (() => void) | undefined;
  const wake = () => {
    wakeWriter?.();
    wakeWriter = undefined;
  };
  async function* requests(): AsyncGenerator<MessageInit<ForwardPortRequest>> {
    yield { msg: { case: 'open', value: { ...target, $typeName: 'waggle.nodeagent.v1.PortTarget' } } };
    while (true) {
      while (!pending && !ended) await new Promise<void>((r) => (wakeWriter = r));
      if (pending) {
        const p = pending;
        pending = undefined;
        yield { msg: { case: 'data', value: p.data } };
        p.done();
        continue;
      }
      return;
    }
  }
  const responses = open(requests(), abort.signal)[Symbol.asyncIterator]();
  let first: IteratorResult<ForwardPortResponse>;
  try {
    if (signal?.aborted) throw signal.reason ?? new Error('gave up opening the tunnel');
    first = await responses.next();
  } catch (err) {
    abort.abort();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onGiveUp);
  }
  if (first.done || first.value.msg.case !== 'opened') {
    abort.abort();
    throw new Error('the node-agent ended the port tunnel before the guest accepted it');
  }

  let wantMore: (() => void) | undefined;
  const duplex = new Duplex({
    write(chunk: Buffer, _enc, done) {
      pending = { data: new Uint8Array(chunk), done };
      wake();
    },
    final(done) {
      ended = true;
      wake();
      done();
    },
    read() {
      wantMore?.();
      wantMore = undefined;
    },
    destroy(err, done) {
      ended = true;
      pending?.done(err ?? new Error('tunnel closed'));
      pending = undefined;
      wake();
      abort.abort();
      done(err);
    },
  });
  // Socket-like methods, so the tunnel can carry node:http (which sets idle timeouts and the
  // like on its socket). The idle timer restarts on every chunk either way.
  let idleMs = 0;
  let idleTimer: NodeJS.Timeout | undefined;
  const touch = () => {
    clearTimeout(idleTimer);
    if (idleMs > 0 && !duplex.destroyed) idleTimer = setTimeout(() => duplex.emit('timeout'), idleMs).unref();
  };
  duplex.on('close', () => clearTimeout(idleTimer));
  const socketLike = {
    setTimeout(ms: number, onTimeout?: () => void) {
      idleMs = ms;
      if (onTimeout) duplex.once('timeout', onTimeout);
      touch();
      return duplex;
    },
    setNoDelay: () => duplex,
    setKeepAlive: () => duplex,
    ref: () => duplex,
    unref: () => duplex,
  };
  Object.assign(duplex, socketLike);
  const write = duplex.write.bind(duplex) as (...a: unknown[]) => boolean;
  duplex.write = ((...a: unknown[]) => {
    touch();
    return write(...a);
  }) as typeof duplex.write;
  void (async () => {
    try {
      while (true) {
        const next = await responses.next();
        if (next.done) break;
        if (next.value.msg.case !== 'data') continue;
        touch();
        if (!duplex.push(Buffer.from(next.value.msg.value))) {
          await new Promise<void>((r) => (wantMore = r));
        }
      }
      duplex.push(null);
    } catch (err) {
      if (!duplex.destroyed) duplex.destroy(err as Error);
    }
  })();
  return duplex;
}
