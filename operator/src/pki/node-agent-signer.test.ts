import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import type { V1CertificateSigningRequest } from '@kubernetes/client-node';
import * as x509 from '@peculiar/x509';
import { nodeAgentServerName } from '@waggle/node-agent/client';
import { describe, expect, it } from 'vitest';
import { judgeNodeAgentCSR, NODE_NAME_EXTRA } from './node-agent-signer.ts';

// Node's global Web Crypto (the same object as node:crypto's `webcrypto`, typed as @peculiar/x509 expects).
x509.cryptoProvider.set(crypto);

const REQUESTER = 'system:serviceaccount:waggle-system:waggle-node-agent';
const policy = { requester: REQUESTER, validityMs: 86_400_000 };

async function csr(
  opts: {
    subject?: string;
    names?: Array<{ type: 'dns' | 'ip'; value: string }>;
    username?: string;
    nodes?: string[];
    usages?: string[];
    expirationSeconds?: number;
    rsaBits?: number;
  } = {},
): Promise<V1CertificateSigningRequest> {
  const alg = opts.rsaBits
    ? {
        name: 'RSASSA-PKCS1-v1_5',
        hash: 'SHA-256',
        publicExponent: new Uint8Array([1, 0, 1]),
        modulusLength: opts.rsaBits,
      }
    : { name: 'ECDSA', namedCurve: 'P-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const req = await x509.Pkcs10CertificateRequestGenerator.create({
    name: opts.subject ?? 'CN=waggle-node-agent',
    keys,
    signingAlgorithm: opts.rsaBits ? alg : { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.SubjectAlternativeNameExtension(
        opts.names ?? [{ type: 'dns', value: nodeAgentServerName('node-a') }],
      ),
    ],
  });
  return {
    spec: {
      request: Buffer.from(req.toString('pem')).toString('base64'),
      signerName: 'waggle.dev/waggle-system.waggle-node-agent',
      usages: opts.usages ?? ['digital signature', 'server auth'],
      username: opts.username ?? REQUESTER,
      extra: { [NODE_NAME_EXTRA]: opts.nodes ?? ['node-a'] },
      ...(opts.expirationSeconds ? { expirationSeconds: opts.expirationSeconds } : {}),
    },
  };
}

const reason = async (c: V1CertificateSigningRequest) => {
  const j = await judgeNodeAgentCSR(c, policy);
  return j.ok ? `ok:${j.nodeName}:${j.validityMs}` : `${j.reason}: ${j.message}`;
};

describe('judgeNodeAgentCSR', () => {
  it('approves the node-agent asking for its own node, for at most the policy validity', async () => {
    expect(await reason(await csr())).toBe('ok:node-a:86400000');
    expect(await reason(await csr({ expirationSeconds: 3600 }))).toBe('ok:node-a:3600000');
    expect(await reason(await csr({ rsaBits: 2048 }))).toBe('ok:node-a:86400000');
  });

  it('denies other requesters, tokens bound to no node or to another node', async () => {
    expect(await reason(await csr({ username: 'system:serviceaccount:default:default' }))).toMatch(
      /^UnexpectedRequester/,
    );
    expect(await reason(await csr({ nodes: [] }))).toMatch(/^NoNodeBinding/);
    expect(await reason(await csr({ nodes: ['node-a', 'node-b'] }))).toMatch(/^NoNodeBinding/);
    expect(await reason(await csr({ nodes: ['node-b'] }))).toBe(
      "NodeMismatch: requested a certificate for node node-a, but the requester's token is bound to node node-b",
    );
  });

  it('denies requests for more or other names, another subject, client usage or weak keys', async () => {
    const a = nodeAgentServerName('node-a');
    expect(
      await reason(
        await csr({
          names: [
            { type: 'dns', value: a },
            { type: 'dns', value: 'evil.example' },
          ],
        }),
      ),
    ).toMatch(/^InvalidRequest: request exactly one name/);
    expect(
      await reason(
        await csr({
          names: [
            { type: 'dns', value: a },
            { type: 'ip', value: '10.0.0.1' },
          ],
        }),
      ),
    ).toMatch(/^InvalidRequest/);
    expect(
      await reason(await csr({ names: [{ type: 'dns', value: nodeAgentServerName('*') }], nodes: ['*'] })),
    ).toMatch(/^InvalidRequest: not a node name: \*/);
    expect(await reason(await csr({ names: [{ type: 'dns', value: 'waggle-node-agent' }] }))).toMatch(
      /^InvalidRequest/,
    );
    expect(await reason(await csr({ subject: 'CN=waggle-operator' }))).toMatch(
      /^InvalidRequest: the subject must be/,
    );
    expect(await reason(await csr({ usages: ['digital signature', 'client auth', 'server auth'] }))).toMatch(
      /^InvalidUsages/,
    );
    expect(await reason(await csr({ usages: ['digital signature'] }))).toMatch(/^InvalidUsages/);
    expect(await reason(await csr({ rsaBits: 1024 }))).toMatch(/^InvalidRequest: the key must be/);
  });

  it('denies a request that is not signed by its own key', async () => {
    const good = await csr();
    const other = await csr({ names: [{ type: 'dns', value: nodeAgentServerName('node-a') }] });
    // Splice another request's signature onto this one: unreadable or not self-signed.
    const pem = Buffer.from(good.spec.request, 'base64').toString('utf8');
    const tampered = pem.replace(/.{8}\n-----END/, 'AAAAAAAA\n-----END');
    good.spec.request = Buffer.from(tampered).toString('base64');
    expect(await reason(good)).toMatch(/^InvalidRequest/);
    expect(await reason(other)).toBe('ok:node-a:86400000');
  });
});
