import { describe, expect, it } from 'vitest';
import { skopeoFailure } from './image-errors.ts';

const image = '127.0.0.1:40401/team/v1.404:tls-403';
const registry = '127.0.0.1:40401';
const said = (msg: string) => `time="2026-12-02T19:00:00Z" level=fatal msg="${msg}"`;

describe('skopeoFailure', () => {
  it.each([
    [`reading manifest tls-403 in ${registry}/team/v1.404: manifest unknown`, 'not-found'],
    [`initializing source docker://${image}: reading manifest: StatusCode: 404, 404 Not Found`, 'not-found'],
    [
      `reading manifest tls-403 in ${registry}/team/v1.404: unauthorized: authentication required`,
      'unauthorized',
    ],
    [`initializing source docker://${image}: requested access to the resource is denied`, 'unauthorized'],
    [
      'choosing an image from manifest list: no image found in manifest list for architecture amd64, variant "", OS linux',
      'wrong-architecture',
    ],
    [`writing blob: write /var/cache/x: no space left on device`, 'node-error'],
    [`unsupported manifest media type application/x-foo`, 'not-an-image'],
    // The name holds "404", "403" and "tls"; the port "404": none of it decides.
    [
      `pinging container registry ${registry}: Get "http://${registry}/v2/": dial tcp ${registry}: connect: connection refused`,
      'unreachable',
    ],
    [
      `reading manifest tls-403 in ${registry}/team/v1.404: toomanyrequests: You have reached your pull rate limit`,
      'unreachable',
    ],
    [`received unexpected HTTP status: 502 Bad Gateway`, 'unreachable'],
  ])('reads %j as %s', (msg, reason) => {
    const e = skopeoFailure(image, registry, `some earlier line about 404\n${said(msg)}\n`);
    expect(e.reason).toBe(reason);
    expect(e.message).toContain(image);
  });
});
