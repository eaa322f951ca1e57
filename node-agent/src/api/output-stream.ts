import { toConnectError } from './connect-errors.ts';

/**
 * Turns a piece of work that reports events through a callback into a server stream: events are
 * yielded in arrival order as they come, then the final message built from the work's result. A
 * failure of the work leaves as a Connect error after the events already sent.
 */
export async function* streamEvents<E, R, M>(
  work: (emit: (event: E) => void) => Promise<R>,
  eventMessage: (event: E) => M,
  finalMessage: (result: R) => M,
): AsyncGenerator<M> {
  const queue: M[] = [];
  let wake: (() => void) | undefined;
  let done = false;
  let failure: unknown;
  let final: M | undefined;
  work((event) => {
    queue.push(eventMessage(event));
    wake?.();
  })
    .then(
      (r) => {
        final = finalMessage(r);
      },
      (err) => {
        failure = err ?? new Error('the work failed without an error');
      },
    )
    .finally(() => {
      done = true;
      wake?.();
    });
  while (true) {
    while (queue.length > 0) yield queue.shift() as M;
    if (done) break;
    await new Promise<void>((r) => {
      wake = r;
    });
    wake = undefined;
  }
  while (queue.length > 0) yield queue.shift() as M;
  if (failure) throw toConnectError(failure);
  if (final !== undefined) yield final;
}

/** `streamEvents` for work that reports output chunks (stdout or stderr). */
export function streamOutput<R, M>(
  work: (onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void) => Promise<R>,
  chunkMessage: (stream: 'stdout' | 'stderr', chunk: Uint8Array) => M,
  finalMessage: (result: R) => M,
): AsyncGenerator<M> {
  return streamEvents<{ stream: 'stdout' | 'stderr'; chunk: Buffer }, R, M>(
    (emit) => work((stream, chunk) => emit({ stream, chunk })),
    (e) => chunkMessage(e.stream, new Uint8Array(e.chunk)),
    finalMessage,
  );
}
