import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/** One workspace package: its directory (relative to the root) and its package.json. */
export interface WorkspacePackage {
  dir: string;
  name: string;
  dependencies: ReadonlySet<string>;
  devDependencies: ReadonlySet<string>;
}

/** How a file's imports count for its package.json: shipped code, or tests and tooling. */
export type FileRole = 'production' | 'development';

/** One import specifier of one file, resolved to what it reaches. */
export interface ImportEdge {
  /** The importing file, relative to the root with `/` separators. */
  file: string;
  role: FileRole;
  /** The importing file's package directory. */
  from: string;
  specifier: string;
  target:
    | { kind: 'builtin' }
    /** A workspace package by name (`@waggle/crds/informer` → package `@waggle/crds`, subpath `./informer`). */
    | { kind: 'workspace'; pkg: WorkspacePackage; subpath: string }
    | { kind: 'external'; name: string }
    /** A relative path: the file it reaches and the package directory that holds it (or none). */
    | { kind: 'relative'; path: string; pkgDir: string | undefined };
}

/** Components whose `src/` is shipped in images; everything else is development code. */
const SHIPPED = ['crds', 'operator', 'mcp-gateway', 'node-agent'];

const STATIC = /^[ \t]*(?:import|export)\s[^;]*?\sfrom\s*['"]([^'"\n]+)['"]/gm;
const SIDE_EFFECT = /^[ \t]*import\s*['"]([^'"\n]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"\n]+)['"]\s*\)/g;

/**
 * The module specifiers of a TypeScript source: static imports and re-exports (type-only ones
 * too: they couple packages just the same), side-effect imports and dynamic imports of a literal.
 * A statement is only recognised at the start of a line, so examples in doc comments do not count.
 */
export function importSpecifiers(source: string): string[] {
  const found = new Set<string>();
  for (const re of [STATIC, SIDE_EFFECT, DYNAMIC]) {
    for (const m of source.matchAll(re)) found.add(m[1] as string);
  }
  return [...found];
}

/** Whether a file under a package is shipped code (`<component>/src/**`, not tests or fakes). */
export function roleOf(pkgDir: string, fileInPkg: string): FileRole {
  const production =
    SHIPPED.includes(pkgDir) &&
    fileInPkg.startsWith('src/') &&
    !fileInPkg.endsWith('.test.ts') &&
    !fileInPkg.startsWith('src/testing/');
  return production ? 'production' : 'development';
}

/** The workspace packages listed in pnpm-workspace.yaml, with their declared dependencies. */
export function workspacePackages(root: string): WorkspacePackage[] {
  const yaml = readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8');
  const dirs = [...yaml.matchAll(/^\s*-\s*['"]?([^'"\s]+)['"]?\s*$/gm)].map((m) => m[1] as string);
  return dirs.map((dir) => {
    const json = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as {
      name: string;
      dependencies?: Record<string, string>;
      devDependencies?: Record<string, string>;
    };
    return {
      dir,
      name: json.name,
      dependencies: new Set(Object.keys(json.dependencies ?? {})),
      devDependencies: new Set(Object.keys(json.devDependencies ?? {})),
    };
  });
}

function* sourceFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (/\.[cm]?[jt]s$/.test(entry.name)) yield path;
  }
}

const packageName = (specifier: string) => {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string);
};

/** Every import of every TypeScript file in the workspace packages, resolved. */
export function importGraph(root: string, packages = workspacePackages(root)): ImportEdge[] {
  const byName = new Map(packages.map((p) => [p.name, p]));
  const pkgDirOf = (path: string) =>
    packages.find((p) => path === join(root, p.dir) || path.startsWith(join(root, p.dir) + sep))?.dir;
  const edges: ImportEdge[] = [];
  for (const pkg of packages) {
    for (const path of sourceFiles(join(root, pkg.dir))) {
      const file = relative(root, path).split(sep).join('/');
      const role = roleOf(pkg.dir, file.slice(pkg.dir.length + 1));
      for (const specifier of importSpecifiers(readFileSync(path, 'utf8'))) {
        let target: ImportEdge['target'];
        if (specifier.startsWith('.')) {
          const reached = resolve(dirname(path), specifier);
          target = {
            kind: 'relative',
            path: relative(root, reached).split(sep).join('/'),
            pkgDir: pkgDirOf(reached),
          };
        } else if (specifier.startsWith('node:')) {
          target = { kind: 'builtin' };
        } else {
          const name = packageName(specifier);
          const ws = byName.get(name);
          target = ws
            ? { kind: 'workspace', pkg: ws, subpath: `.${specifier.slice(name.length)}` }
            : { kind: 'external', name };
        }
        edges.push({ file, role, from: pkg.dir, specifier, target });
      }
    }
  }
  return edges;
}
