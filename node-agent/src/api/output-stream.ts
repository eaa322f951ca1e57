import { toConnectError } from './connect-errors.ts';

/**
 * Turns a piece of work that reports output chunks through a callback into a server stream:
 * chunks are yielded in arrival order as they come, then the final message built from the work's
 * result. A failure of the work leaves as a Connect error after the chunks already sent.
 */
export async function* streamOutput<R, M>(
  work: (onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void) => Promise<R>,
  chunkMessage: (stream: 'stdout' | 'stderr', chunk: Uint8Array) => M,
  finalMessage: (result: R) => M,
): AsyncGenerator<M> {
  const queue: M[] = [];
  let wake: (() => void) | undefined;
  let done = false;
  let failure: unknown;
  let final: M | undefined;
  work((stream, chunk) => {
    queue.push(chunkMessage(stream, new Uint8Array(chunk)));
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
