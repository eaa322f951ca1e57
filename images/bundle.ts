/**
 * The esbuild bundle of one Waggle component: TypeScript stripped, dependencies inlined, one ESM
 * file (docs/adr/0003). The one definition, used by the component Dockerfiles' build stage
 * (`node images/bundle.ts <component> <outDir>`) and by the test harness
 * (test/src/container-images.ts).
 *
 * esbuild is a dependency of the harness package (@waggle/test); images/ is no workspace
 * package, so it is resolved from there.
 */
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

export const COMPONENTS = ['operator', 'mcp-gateway', 'node-agent'] as const;
export type Component = (typeof COMPONENTS)[number];

const REPO = join(import.meta.dirname, '..');

/** The entry points of a component's bundle (the operator's drain helper is its own entry). */
export const entryPoints = (component: Component, repo = REPO): string[] => [
  join(repo, component, 'src', 'main.ts'),
  ...(component === 'operator' ? [join(repo, 'operator', 'src', 'drain.ts')] : []),
];

/** esbuild's build options for a component, writing `<outDir>/main.js` (+ maps, legal notices). */
export const buildOptions = (component: Component, outDir: string, repo = REPO) => ({
  entryPoints: entryPoints(component, repo),
  outdir: outDir,
  bundle: true,
  platform: 'node' as const,
  format: 'esm' as const,
  target: 'node26',
  sourcemap: 'linked' as const,
  legalComments: 'linked' as const,
  logLevel: 'warning' as const,
  // ssh2's optional native helpers; it falls back to pure JS without them.
  external: ['cpu-features', '*.node'],
  // CommonJS dependencies use require, __dirname and __filename; give the ESM bundle them.
  banner: {
    js: [
      "import { createRequire as __wRequire } from 'node:module';",
      "import { fileURLToPath as __wPath } from 'node:url';",
      "import { dirname as __wDir } from 'node:path';",
      'const require = __wRequire(import.meta.url);',
      'const __filename = __wPath(import.meta.url);',
      'const __dirname = __wDir(__filename);',
    ].join(' '),
  },
});

type Esbuild = { build: (options: ReturnType<typeof buildOptions>) => Promise<unknown> };

/** Bundles a component into `outDir` (its dist/ directory). */
export async function bundle(component: Component, outDir: string, repo = REPO): Promise<void> {
  const esbuild = createRequire(join(repo, 'test', 'package.json'))('esbuild') as Esbuild;
  await esbuild.build(buildOptions(component, outDir, repo));
}

const isComponent = (c: string | undefined): c is Component => COMPONENTS.some((k) => k === c);

if (import.meta.main) {
  const [component, outDir] = process.argv.slice(2);
  if (!isComponent(component) || !outDir) {
    process.stderr.write(`usage: node images/bundle.ts <${COMPONENTS.join('|')}> <outDir>\n`);
    process.exit(2);
  }
  await bundle(component, resolve(outDir));
}
