import { once } from 'node:events';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Agent } from '../agent.ts';
import {
  type ForwardPortRequest,
  type ForwardPortResponse,
  ForwardPortResponseSchema,
} from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import { toConnectError } from './connect-errors.ts';

/**
 * ForwardPort: a byte tunnel between a bidi stream and a TCP connection inside the guest. The
 * first request must name the VM and port; once the guest accepted, `opened` is sent and bytes
 * flow both ways with backpressure (the SSH channel's window towards the guest, the HTTP/2
 * stream's towards the caller). The caller ending its stream half-closes the guest connection;
 * the guest closing ends the response stream; a cancelled call closes the channel.
 */
export async function* forwardPort(
  agent: Agent,
  requests: AsyncIterable<ForwardPortRequest>,
  ctx: { signal: AbortSignal },
): AsyncGenerator<ForwardPortResponse> {
  const it = requests[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done || first.value.msg.case !== 'open') {
    throw new ConnectError(
      'the first ForwardPort message must be "open" (vm_id and port)',
      Code.InvalidArgument,
    );
  }
  const { vmId, port } = first.value.msg.value;
  let opened: Awaited<ReturnType<Agent['openPort']>>;
  try {
    opened = await agent.openPort(vmId, port);
  } catch (err) {
    throw toConnectError(err);
  }
  const { channel, release } = opened;
  // ssh2's destroy() only sends EOF and CLOSE; data the guest already sent stays buffered until
  // read, so the channel is drained after it, and the slot is released here, not on 'close'.
  const close = () => {
    channel.destroy();
    channel.resume();
    release();
  };
  const onAbort = close;
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  // Caller → guest, concurrently with guest → caller below.
  void (async () => {
    for (;;) {
      const next = await it.next();
      if (next.done) break;
      if (next.value.msg.case !== 'data') continue;
      if (!channel.write(next.value.msg.value)) await once(channel, 'drain');
    }
    channel.end();
  })().catch(close);
  try {
    yield create(ForwardPortResponseSchema, { msg: { case: 'opened', value: true } });
    for await (const chunk of channel as AsyncIterable<Buffer>) {
      yield create(ForwardPortResponseSchema, { msg: { case: 'data', value: new Uint8Array(chunk) } });
    }
  } catch (err) {
    if (ctx.signal.aborted) return;
    throw new ConnectError(
      `the guest connection on port ${port} failed: ${(err as Error).message}`,
      Code.Unavailable,
    );
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    close();
  }
}
