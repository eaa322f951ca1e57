import { randomBytes } from 'node:crypto';
import ssh2, { type Client } from 'ssh2';
import { GuestUnavailableError } from '../errors.ts';
import { runCommand } from '../guest/ssh-connections.ts';
import { publicKeyBlob } from './keys.ts';

export interface FixupEndpoint {
  host: string;
  port: number;
  privateKey: string;
  hostPublicKey: string;
}

/** One SSH connection as root, host key pinned; rejects after `timeoutMs`. */
function connectOnce(ep: FixupEndpoint, timeoutMs: number): Promise<Client> {
  const expected = publicKeyBlob(ep.hostPublicKey);
  const client = new ssh2.Client();
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      client.destroy();
      reject(err);
    };
    const guard = setTimeout(() => fail(new Error(`no SSH session within ${timeoutMs} ms`)), timeoutMs);
    client.on('error', fail);
    client.on('close', () => fail(new Error('connection closed before the SSH session was ready')));
    client.once('ready', () => {
      if (settled) return void client.end();
      settled = true;
      clearTimeout(guard);
      resolve(client);
    });
    client.connect({
      host: ep.host,
      port: ep.port,
      username: 'root',
      privateKey: ep.privateKey,
      readyTimeout: timeoutMs,
      // The agent may keep this connection (VMManager.takeGuestConnection).
      keepaliveInterval: 15_000,
      hostVerifier: (key: Buffer) => key.equals(expected),
    });
  });
}

/**
 * Waits until a restored guest answers SSH (its sshd listened when it was saved: connecting
 * early is safe, unlike during a boot) and connects.
 */
export async function connectWhenAnswering(ep: FixupEndpoint, timeoutMs: number): Promise<Client> {
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  while (Date.now() < deadline) {
    try {
      return await connectOnce(ep, Math.min(5_000, Math.max(500, deadline - Date.now())));
    } catch (err) {
      last = err as Error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new GuestUnavailableError(
    `the guest did not answer SSH within ${timeoutMs} ms${last ? `: ${last.message}` : ''}`,
  );
}

/**
 * Forces the kernel to re-key its random number generator (ioctl RNDRESEEDCRNG, _IO('R', 7),
 * Linux ≥ 4.17, root): a write to /dev/urandom only mixes into the input pool, and the CRNG
 * every restored sibling shares would otherwise keep its key until the next timed reseed (up to
 * a minute). perl-base is in every Debian image; python3 is the fallback.
 */
export const RESEED_CRNG_SCRIPT =
  'if command -v perl >/dev/null; then ' +
  `perl -e 'open(my $f, "<", "/dev/urandom") or die "$!\\n"; ioctl($f, 0x5207, 0) or die "RNDRESEEDCRNG: $!\\n"'; ` +
  'elif command -v python3 >/dev/null; then ' +
  `python3 -c 'import fcntl; fcntl.ioctl(open("/dev/urandom", "rb"), 0x5207)'; ` +
  'else echo "no perl or python3 to reseed the kernel RNG" >&2; exit 1; fi';

/**
 * What a guest continued from a saved state must not share with its snapshot or its past: the
 * wall clock is set from the node's, fresh random bytes from the node are mixed into the
 * kernel's pool and the kernel's CRNG is re-keyed from it (RESEED_CRNG_SCRIPT).
 */
export async function fixRestoredGuest(client: Client): Promise<void> {
  const epoch = (Date.now() / 1000).toFixed(3);
  const r = await runCommand(
    client,
    `date -u -s @${epoch} >/dev/null && cat > /dev/urandom && { ${RESEED_CRNG_SCRIPT}; }`,
    randomBytes(512),
    { timeoutMs: 10_000 },
  );
  if (r.code !== 0) {
    throw new GuestUnavailableError(
      `could not fix the restored guest's clock and randomness: ${r.stderr.toString().trim() || `exit ${r.code}`}`,
    );
  }
}
