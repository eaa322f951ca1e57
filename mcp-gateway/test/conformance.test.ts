import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { applyCRDs, loadKubeConfig } from '@waggle/test';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadGatewayConfig } from '../src/config.ts';
import { type RunningGateway, startGateway } from '../src/gateway.ts';

const run = promisify(execFile);
const PKG = join(import.meta.dirname, '..');
const BIN = join(PKG, 'node_modules', '.bin', 'conformance');
const EXPECTED = join(PKG, 'conformance', 'expected-failures.yaml');

/** Scenarios this server claims to pass (the rest are listed, with reasons, in EXPECTED). */
const CLAIMED = [
  'server-initialize',
  'ping',
  'tools-list',
  'dns-rebinding-protection',
  'logging-set-level',
  'server-sse-multiple-streams',
];

const kubeconfigPath = inject('kubeconfigPath');
let gateway: RunningGateway;
let out: string;

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  const kc = loadKubeConfig(kubeconfigPath);
  // The suite speaks unauthenticated MCP to a localhost server: the gateway's insecure mode.
  gateway = await startGateway({
    config: loadGatewayConfig({
      WAGGLE_LISTEN_ADDR: '127.0.0.1:0',
      WAGGLE_METRICS_LISTEN: '127.0.0.1:0',
      WAGGLE_AUTH_MODE: 'insecure',
    }),
    kc,
    log: pino({ level: 'silent' }),
  });
  out = await mkdtemp(join(tmpdir(), 'waggle-conformance-'));
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  if (out) await rm(out, { recursive: true, force: true });
});

describe('MCP conformance suite (@modelcontextprotocol/conformance server scenarios)', () => {
  it('passes the claimed scenarios; every other failure is listed and explained', {
    timeout: 300_000,
  }, async () => {
    const result = await run(
      BIN,
      ['server', '--url', gateway.url, '--expected-failures', EXPECTED, '-o', out],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    ).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({
        code: e.code ?? 1,
        stdout: `${e.stdout ?? ''}\n${e.stderr ?? ''}`,
      }),
    );
    const summary = result.stdout.slice(result.stdout.indexOf('=== SUMMARY ==='));
    process.stderr.write(`conformance:\n${summary}\n`);
    for (const scenario of CLAIMED)
      expect(summary, scenario).toMatch(new RegExp(`✓ ${scenario}: [1-9]\\d* passed, 0 failed`));
    expect(result.code, summary).toBe(0);
  });
});
