// The dependency rules of docs/architecture.md, held for every TypeScript file of the workspace
// packages: crds imports no component; the operator and the gateway use the node-agent only
// through its client; the gateway and the operator meet only through the Kubernetes API; shipped
// code never imports the test harness; no package reaches into another by relative path; and
// each package.json declares what its code imports (dependencies for shipped code).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type ImportEdge, importGraph, workspacePackages } from './import-graph.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const packages = workspacePackages(root);
const edges = importGraph(root, packages);
const rootDevDependencies = new Set(
  Object.keys(
    (JSON.parse(readFileSync(`${root}/package.json`, 'utf8')) as { devDependencies?: object })
      .devDependencies ?? {},
  ),
);

const show = (e: ImportEdge) => `${e.file} imports '${e.specifier}'`;
/** The package directory an import reaches, by name or by path (undefined: builtin, external). */
const reaches = (e: ImportEdge): string | undefined => {
  if (e.target.kind === 'workspace') return e.target.pkg.dir;
  if (e.target.kind === 'relative') return e.target.pkgDir;
  return undefined;
};
const violations = (pred: (e: ImportEdge) => boolean) => edges.filter(pred).map(show);

/**
 * Integration tests may load one module of a component by path: they run it against the real
 * apiserver of the harness (the CSR signer beside the serving certificate, the quota controller
 * beside the admission policy), and those modules are no package's public entry.
 */
const intoComponentSrc = (e: ImportEdge) =>
  /^test\/integration\/[^/]+\.test\.ts$/.test(e.file) &&
  e.target.kind === 'relative' &&
  /^(crds|operator|mcp-gateway|node-agent)\/src\//.test(e.target.path);

describe('dependency rules (docs/architecture.md)', () => {
  it('scans the workspace (the rules below cannot pass on an empty graph)', () => {
    expect(packages.map((p) => p.dir).sort()).toEqual([
      'crds',
      'mcp-gateway',
      'node-agent',
      'operator',
      'test',
    ]);
    expect(edges.length).toBeGreaterThan(500);
    expect(edges.map(show)).toContain("operator/src/operator.ts imports '@waggle/crds/informer'");
  });

  it('crds imports no component', () => {
    expect(violations((e) => e.from === 'crds' && reaches(e) !== undefined && reaches(e) !== 'crds')).toEqual(
      [],
    );
  });

  it('the operator and the gateway use the node-agent only through its client (tests also its fake)', () => {
    expect(
      violations((e) => {
        if (!['operator', 'mcp-gateway'].includes(e.from) || reaches(e) !== 'node-agent') return false;
        if (e.target.kind !== 'workspace') return true;
        const allowed = e.role === 'production' ? ['./client'] : ['./client', './testing'];
        return !allowed.includes(e.target.subpath);
      }),
    ).toEqual([]);
  });

  it('the gateway and the operator never import each other', () => {
    expect(
      violations(
        (e) =>
          (e.from === 'mcp-gateway' && reaches(e) === 'operator') ||
          (e.from === 'operator' && reaches(e) === 'mcp-gateway'),
      ),
    ).toEqual([]);
  });

  it('shipped code never imports the test harness', () => {
    expect(violations((e) => e.role === 'production' && reaches(e) === 'test')).toEqual([]);
  });

  it('no package reaches into another by relative path (only through its package entry points)', () => {
    expect(
      violations((e) => e.target.kind === 'relative' && e.target.pkgDir !== e.from && !intoComponentSrc(e)),
    ).toEqual([]);
  });

  it('each package.json lists exactly the workspace packages its code imports', () => {
    const mismatches: string[] = [];
    const compare = (what: string, declared: string[], imported: string[]) => {
      if (declared.join() !== imported.join())
        mismatches.push(`${what}: declares [${declared.join(', ')}], code imports [${imported.join(', ')}]`);
    };
    for (const pkg of packages) {
      const imported = (role?: ImportEdge['role']) => [
        ...new Set(
          edges.flatMap((e) =>
            e.from === pkg.dir &&
            e.target.kind === 'workspace' &&
            e.target.pkg !== pkg &&
            (role === undefined || e.role === role)
              ? [e.target.pkg.name]
              : [],
          ),
        ),
      ];
      const declared = (list: ReadonlySet<string>) => [...list].filter((n) => n.startsWith('@waggle/'));
      if (pkg.dir === 'test') {
        // The harness is development code throughout: either list will do.
        compare(
          pkg.dir,
          [...declared(pkg.dependencies), ...declared(pkg.devDependencies)].sort(),
          imported().sort(),
        );
        continue;
      }
      const production = imported('production').sort();
      compare(`${pkg.dir} dependencies`, declared(pkg.dependencies).sort(), production);
      compare(
        `${pkg.dir} devDependencies`,
        declared(pkg.devDependencies).sort(),
        imported()
          .filter((n) => !production.includes(n))
          .sort(),
      );
    }
    expect(mismatches).toEqual([]);
  });

  it('every third-party package a file imports is declared (shipped code: in dependencies)', () => {
    expect(
      violations((e) => {
        if (e.target.kind !== 'external') return false;
        const pkg = packages.find((p) => p.dir === e.from);
        if (!pkg) return true;
        const name = e.target.name;
        if (e.role === 'production') return !pkg.dependencies.has(name);
        return (
          !pkg.dependencies.has(name) && !pkg.devDependencies.has(name) && !rootDevDependencies.has(name)
        );
      }),
    ).toEqual([]);
  });
});
