import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { KubernetesTokenAuthenticator } from './kubernetes-tokens.ts';

/** A stand-in apiserver answering TokenReview and SubjectAccessReview; counts reviews. */
async function fakeApiserver(): Promise<{ server: Server; url: string; reviews: () => number }> {
  let reviews = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const obj = JSON.parse(body || '{}') as { spec?: { token?: string } };
      res.setHeader('content-type', 'application/json');
      if (req.url?.includes('tokenreviews')) {
        reviews++;
        const ok = obj.spec?.token === 'good';
        res.end(
          JSON.stringify({
            apiVersion: 'authentication.k8s.io/v1',
            kind: 'TokenReview',
            status: ok
              ? { authenticated: true, user: { username: 'system:serviceaccount:team-a:agent' } }
              : { authenticated: false, error: 'invalid token' },
          }),
        );
      } else {
        res.end(
          JSON.stringify({
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SubjectAccessReview',
            status: { allowed: true },
          }),
        );
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, reviews: () => reviews };
}

function kubeconfig(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'gateway' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

let servers: Server[] = [];
afterEach(() => {
  for (const s of servers) s.close();
  servers = [];
});

describe('KubernetesTokenAuthenticator while the apiserver is down', () => {
  it('keeps a caller it accepted recently (staleOnErrorMs), and only that caller', async () => {
    const api = await fakeApiserver();
    servers.push(api.server);
    const auth = new KubernetesTokenAuthenticator(kubeconfig(api.url), { ttlMs: 20, staleOnErrorMs: 60_000 });
    const caller = await auth.authenticate('good');
    expect(caller?.namespace).toBe('team-a');
    await new Promise((r) => setTimeout(r, 40)); // past ttlMs: the next call must ask again
    api.server.close();
    api.server.closeAllConnections();
    const during = await auth.authenticate('good');
    expect(during?.principal).toBe(caller?.principal);
    expect(api.reviews()).toBe(1);
    // A token never accepted is not let in because the apiserver cannot be asked.
    await expect(auth.authenticate('unknown')).rejects.toThrow();
  });

  it('fails closed without the stale window', async () => {
    const api = await fakeApiserver();
    servers.push(api.server);
    const auth = new KubernetesTokenAuthenticator(kubeconfig(api.url), { ttlMs: 20 });
    await auth.authenticate('good');
    await new Promise((r) => setTimeout(r, 40));
    api.server.close();
    api.server.closeAllConnections();
    await expect(auth.authenticate('good')).rejects.toThrow();
  });
});
