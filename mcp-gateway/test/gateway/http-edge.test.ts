// The HTTP edge: bearer tokens and API keys, ServiceAccount tokens checked with RBAC, Origin and
// Host checks, health and metrics.
import { request as httpRequest } from 'node:http';
import { agentServiceAccount, connectClient, ok, postInitialize } from '@waggle/test';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway.ts';
import { core, envObject, nsA, nsB, rbac, useGatewayStack } from './fixture.ts';

const stack = useGatewayStack();
let gateway: RunningGateway;
let keyA: string;
beforeAll(() => {
  ({ gateway, keyA } = stack);
});

describe('mcp-gateway HTTP edge', () => {
  const post = (headers: Record<string, string>) => postInitialize(gateway.url, headers);

  it('refuses a missing or unknown token with 401 and WWW-Authenticate', async () => {
    const none = await post({});
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(((await none.json()) as { error: { message: string } }).error.message).toMatch(
      /missing bearer token/,
    );
    const wrong = await post({ authorization: 'Bearer not-a-real-key-0000000000000000' });
    expect(wrong.status).toBe(401);
  });

  it('refuses a foreign Origin or Host with 403 (DNS rebinding)', async () => {
    const origin = await post({ authorization: `Bearer ${keyA}`, origin: 'http://evil.example' });
    expect(origin.status).toBe(403);
    expect(((await origin.json()) as { error: { message: string } }).error.message).toMatch(
      /Origin "http:\/\/evil.example" is not allowed/,
    );
    // fetch will not send a forged Host; a raw HTTP request will (as a rebinding browser does).
    const u = new URL(gateway.url);
    const hostStatus = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: {
            host: 'evil.example',
            authorization: `Bearer ${keyA}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
    expect(hostStatus).toBe(403);
    const local = await post({ authorization: `Bearer ${keyA}`, origin: 'http://localhost:6274' });
    expect(local.status).toBe(200);
  });

  it('refuses an API key used for another namespace', async () => {
    const r = await post({ authorization: `Bearer ${keyA}`, 'x-waggle-namespace': nsB });
    expect(r.status).toBe(403);
    expect(await r.text()).toMatch(/is for namespace/);
  });

  it('accepts ServiceAccount tokens that RBAC allows, in their own namespace only', {
    timeout: 60_000,
  }, async () => {
    const sa = 'agent-sa';
    const saToken = await agentServiceAccount({ core, rbac }, nsB, sa);
    const noRbacToken = await agentServiceAccount({ core, rbac }, nsB, 'no-rbac', []);
    const saClient = await connectClient(gateway.url, await saToken(), 'sa-agent');
    try {
      const created = await ok<{ environment_id: string }>(saClient, 'create_environment', {
        runtime: 'python',
      });
      expect(
        (await envObject(nsB, created.environment_id)).metadata.annotations?.['waggle.dev/caller-name'],
      ).toBe(`system:serviceaccount:${nsB}:${sa}`);
      await ok(saClient, 'destroy_environment', { environment_id: created.environment_id });
    } finally {
      await saClient.close();
    }
    const denied = await post({ authorization: `Bearer ${await noRbacToken()}` });
    expect(denied.status).toBe(403);
    expect(await denied.text()).toMatch(/may not use waggleenvironments in namespace/);
    // Allowed to create only: the gateway must not lend it its own list/delete permissions.
    const createOnlyToken = await agentServiceAccount({ core, rbac }, nsB, 'create-only', ['create']);
    const partial = await post({ authorization: `Bearer ${await createOnlyToken()}` });
    expect(partial.status).toBe(403);
    expect(((await partial.json()) as { error: { message: string } }).error.message).toMatch(
      /lacks "get", "list", "delete" on waggleenvironments/,
    );
    const otherNs = await post({ authorization: `Bearer ${await saToken()}`, 'x-waggle-namespace': nsA });
    expect(otherNs.status).toBe(403);
  });

  it('serves health, readiness and metrics', async () => {
    const base = gateway.url.replace(/\/mcp$/, '');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(gateway.metricsUrl)).text();
    expect(metrics).toMatch(/waggle_gateway_tool_calls_total\{tool="create_environment",outcome="ok"\} \d+/);
    expect(metrics).toMatch(/waggle_gateway_auth_failures_total\{status="401"\} \d+/); // Only on the metrics listener: the public port does not serve them.
    expect((await fetch(`${base}/metrics`)).status).toBe(404);
  });
});
