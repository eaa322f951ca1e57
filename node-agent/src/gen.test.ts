import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const PKG = join(import.meta.dirname, '..');
const FILES = ['node_agent_pb.js', 'node_agent_pb.d.ts'];

describe('generated ConnectRPC code', () => {
  it('matches proto/ (run `pnpm --filter @waggle/node-agent generate` if not)', {
    timeout: 60_000,
  }, async () => {
    const out = await mkdtemp(join(tmpdir(), 'waggle-buf-'));
    try {
      const bin = join(PKG, 'node_modules', '.bin'); // buf runs protoc-gen-es from PATH
      await run(join(bin, 'buf'), ['generate', '-o', out], {
        cwd: PKG,
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      });
      for (const f of FILES) {
        const rel = join('src', 'gen', 'waggle', 'nodeagent', 'v1', f);
        expect(await readFile(join(PKG, rel), 'utf8'), rel).toBe(await readFile(join(out, rel), 'utf8'));
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
