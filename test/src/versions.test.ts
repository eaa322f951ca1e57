import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';

// One version for the whole project: the chart (version, appVersion), every package, and the
// CHANGELOG's latest release. A release bumps them together or this fails.
const REPO = join(import.meta.dirname, '..', '..');
const read = (path: string) => readFileSync(join(REPO, path), 'utf8');
const PACKAGES = ['crds', 'operator', 'mcp-gateway', 'node-agent', 'test'];
/** The components with a /version endpoint. */
const COMPONENTS = ['operator', 'mcp-gateway', 'node-agent'] as const;
const run = promisify(execFile);
const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

describe('project version and license', () => {
  it('has one version across the chart, the packages and the changelog', () => {
    const chart = parse(read('charts/waggle/Chart.yaml')) as { version: string; appVersion: string };
    expect(chart.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(chart.appVersion).toBe(chart.version);
    for (const pkg of PACKAGES) {
      expect((JSON.parse(read(`${pkg}/package.json`)) as { version: string }).version, pkg).toBe(
        chart.version,
      );
    }
    const released = /^## (\d+\.\d+\.\d+) — \d{4}-\d{2}-\d{2}$/m.exec(read('CHANGELOG.md'))?.[1];
    expect(released).toBe(chart.version);
  });

  // What each component's /version answers (and its start line logs) is its version module's
  // readVersion(): run as the component runs — from source, and as the image's esbuild bundle
  // with the package.json copied beside dist/ (images/<component>/Dockerfile).
  describe.each(COMPONENTS)('%s /version', (component) => {
    const appVersion = (parse(read('charts/waggle/Chart.yaml')) as { appVersion: string }).appVersion;
    const expected = { component, version: appVersion };
    const versionModule = join(REPO, component, 'src', 'version.ts');
    const report = `process.stdout.write(JSON.stringify(readVersion()));`;

    it('from source is the chart’s appVersion', async () => {
      const script = `const { readVersion } = await import(${JSON.stringify(pathToFileURL(versionModule).href)}); ${report}`;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
      expect(JSON.parse(stdout)).toEqual(expected);
    });

    it('from the image’s bundle is the chart’s appVersion', async () => {
      const dir = await mkdtemp(join(tmpdir(), `waggle-version-${component}-`));
      dirs.push(dir);
      await mkdir(join(dir, 'dist'));
      await build({
        stdin: {
          contents: `import { readVersion } from ${JSON.stringify(versionModule)}; ${report}`,
          resolveDir: REPO,
          loader: 'ts',
        },
        bundle: true,
        platform: 'node',
        format: 'esm',
        outfile: join(dir, 'dist', 'main.js'),
        logLevel: 'silent',
      });
      await copyFile(join(REPO, component, 'package.json'), join(dir, 'package.json'));
      const { stdout } = await run(process.execPath, [join(dir, 'dist', 'main.js')]);
      expect(JSON.parse(stdout)).toEqual(expected);
    });
  });

  it('is Apache-2.0: the LICENSE file and the root package agree', () => {
    expect(read('LICENSE')).toMatch(/^\s+Apache License\n\s+Version 2\.0, January 2004\n/);
    expect((JSON.parse(read('package.json')) as { license: string }).license).toBe('Apache-2.0');
  });
});
