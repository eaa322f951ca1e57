import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

// One version for the whole project: the chart (version, appVersion), every package, and the
// CHANGELOG's latest release. A release bumps them together or this fails.
const REPO = join(import.meta.dirname, '..', '..');
const read = (path: string) => readFileSync(join(REPO, path), 'utf8');
const PACKAGES = ['crds', 'operator', 'mcp-gateway', 'node-agent', 'test'];

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

  it('is Apache-2.0: the LICENSE file and the root package agree', () => {
    expect(read('LICENSE')).toMatch(/^\s+Apache License\n\s+Version 2\.0, January 2004\n/);
    expect((JSON.parse(read('package.json')) as { license: string }).license).toBe('Apache-2.0');
  });
});
