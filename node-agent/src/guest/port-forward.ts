import type { Client, ClientChannel } from 'ssh2';
import { GuestPortClosedError, GuestUnavailableError, InvalidArgumentError } from '../errors.ts';

/** Opens the guest connection within this long or gives up (a guest that never answers). */
const OPEN_TIMEOUT_MS = 10_000;

/** Checks a guest TCP port number (1–65535). */
export function checkGuestPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new InvalidArgumentError(`port ${port} is not a TCP port; use a number from 1 to 65535`);
  }
  return port;
}

/**
 * A TCP connection to `127.0.0.1:<port>` inside the guest, as an SSH direct-tcpip channel on an
 * existing connection: the guest's sshd makes the connection, so nothing listens on the node and
 * the guest can never choose where the agent connects (the address is fixed here).
 */
export function openGuestPort(client: Client, port: number): Promise<ClientChannel> {
  checkGuestPort(port);
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      reject(new GuestUnavailableError(`the guest did not open port ${port} within ${OPEN_TIMEOUT_MS} ms`));
    }, OPEN_TIMEOUT_MS);
    try {
      client.forwardOut('127.0.0.1', 0, '127.0.0.1', port, (err, channel) => {
        clearTimeout(timer);
        if (settled) {
          channel?.destroy();
          return;
        }
        settled = true;
        if (!err) return resolve(channel);
        // sshd answers "Connection refused" (reason 2) when nothing listens on the port.
        const reason = (err as Error & { reason?: number }).reason;
        if (reason === 2 || /refused/i.test(err.message)) {
          reject(
            new GuestPortClosedError(
              port,
              `nothing is listening on port ${port} in the environment; start the server first (e.g. ` +
                '`python3 -m http.server 8000` with execute background: true) and make it listen on 0.0.0.0 or 127.0.0.1',
            ),
          );
        } else {
          reject(new GuestUnavailableError(`cannot open port ${port} in the guest: ${err.message}`));
        }
      });
    } catch (err) {
      clearTimeout(timer);
      settled = true;
      reject(new GuestUnavailableError(`cannot open port ${port} in the guest: ${(err as Error).message}`));
    }
  });
}
