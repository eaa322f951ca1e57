import { request } from 'node:https';

export interface TlsClientOptions {
  ca: string;
  cert?: string;
  key?: string;
}

/** GETs an HTTPS URL with the given client TLS material; resolves with status and body. */
export function httpsGet(
  url: string,
  tls: TlsClientOptions,
  timeoutMs = 5_000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', ...tls, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls `url` until it answers 200, with capped exponential backoff, or throws after `timeoutMs`. */
export async function waitForHttpsOk(
  url: string,
  tls: TlsClientOptions,
  opts: { timeoutMs: number; abort?: Promise<never> },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let delay = 50;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const attempt = (async () => {
      try {
        const r = await httpsGet(url, tls, 2_000);
        if (r.status === 200) return true;
        last = `HTTP ${r.status}: ${r.body.slice(0, 300)}`;
      } catch (err) {
        last = (err as Error).message;
      }
      return false;
    })();
    if (await (opts.abort ? Promise.race([attempt, opts.abort]) : attempt)) return;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 500);
  }
  throw new Error(`${url} was not ready after ${opts.timeoutMs} ms (last: ${last})`);
}
