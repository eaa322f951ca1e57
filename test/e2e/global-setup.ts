import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { parseUpOutput } from '../src/cli/up-output.ts';
import { clusterPaths } from '../src/cluster/layout.ts';

const run = promisify(execFile);

declare module 'vitest' {
  export interface ProvidedContext {
    e2eKubeconfig: string;
    /** What `pnpm waggle up` printed. */
    upUrl: string;
    upToken: string;
  }
}

/**
 * Runs `pnpm waggle up` as a user would (the local cluster, images, the Helm chart, the
 * loopback forward, a demo token) and hands its printed URL and the token from the file it names
 * to the suite.
 */
export default async function setup(project: TestProject): Promise<void> {
  const t0 = Date.now();
  const cli = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
  const { stdout, stderr } = await run(process.execPath, [cli, 'up'], {
    maxBuffer: 16 << 20,
    timeout: 1_800_000,
  }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`pnpm waggle up failed: ${e.message}\n${e.stderr ?? ''}`);
  });
  process.stderr.write(stderr.replace(/^/gm, 'e2e: '));
  // The token is never printed: up names the file it wrote it to (0600).
  const printed = parseUpOutput(stdout);
  if (!printed) throw new Error(`pnpm waggle up did not print an MCP URL and a token file:\n${stdout}`);
  const url = printed.mcpUrl;
  const token = (await readFile(printed.tokenFile, 'utf8')).trim();
  process.stderr.write(`e2e: pnpm waggle up took ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  project.provide('e2eKubeconfig', clusterPaths().adminKubeconfig);
  project.provide('upUrl', url);
  project.provide('upToken', token);
}
