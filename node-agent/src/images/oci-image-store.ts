import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { renameSync } from 'node:fs';
import {
  chmod,
  chown,
  cp,
  lstat,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  statfs,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Runtime } from '@waggle/crds';
import type { Logger } from 'pino';
import { ImageError, skopeoFailure } from './image-errors.ts';
import {
  formatImageReference,
  type ImageReference,
  InvalidImageReference,
  isImageAllowed,
  parseImageReference,
} from './image-reference.ts';
import { executableInRoot, findInRoot } from './rootfs-lookup.ts';

const run = promisify(execFile);

/** The interpreter each runtime's `execute` needs (the shell runtime needs only `/bin/sh`). */
const INTERPRETERS: Record<Runtime, string | undefined> = {
  python: 'python3',
  node: 'node',
  shell: undefined,
};
const DEFAULT_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const DIGEST = /^sha256:[a-f0-9]{64}$/;
interface RawManifest {
  mediaType?: string;
  manifests?: { digest: string; platform?: { os?: string; architecture?: string } }[];
  config?: { mediaType?: string };
  layers?: { size?: number }[];
}
/** Configs of container images; anything else (a Helm chart, an SBOM, …) is an OCI artifact. */
const IMAGE_CONFIG_TYPES = new Set([
  'application/vnd.oci.image.config.v1+json',
  'application/vnd.docker.container.image.v1+json',
]);
const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

export interface ImageStoreOptions {
  /**
   * Entries live in `<cacheDir>/<sha256 hex of the manifest>[-<toolbox id>]/`: one image built
   * with another toolbox is another entry.
   */
  cacheDir: string;
  /**
   * Waggle's guest toolbox (images/guest/build.sh toolbox): copied into every image as
   * `/.waggle` (its init, sshd and root helpers), replacing whatever the image had there.
   * `id` names the build (build.sh's key: the recipe and the Debian package versions).
   */
  toolbox?: { dir: string; id: string };
  /** Least recently used entries beyond this total are removed (never one in use). */
  maxCacheBytes: number;
  /** Largest unpacked image accepted. */
  maxImageBytes: number;
  /** Who may be pulled (`image-reference.ts` `isImageAllowed`). */
  allowList: readonly string[];
  /** Registries reached over plain HTTP or without TLS verification (a registry on the node). */
  insecureRegistries: readonly string[];
  /** Root filesystems (`PulledImage.rootfs`) that back live VMs (never collected). */
  inUse: () => Iterable<string>;
  /**
   * How long a resolved image is kept from collection even when nothing uses it yet: the time
   * between a resolve and the VM that will use it being registered (default 10 min).
   */
  leaseMs?: number;
  /**
   * Keep what each reference last resolved to (`<cacheDir>/.refs/`), for `lastResolved`: the
   * built-in runtime images, so a node starts while their registry is down.
   */
  rememberReferences?: boolean;
  /** Where pull credentials are written for one call (default /dev/shm: memory, never disk). */
  secretsDir?: string;
  log: Logger;
}

export type ImagePhase = 'resolving' | 'pulling' | 'unpacking' | 'building' | 'cached';

export interface PulledImage {
  /** Normalized reference as asked for. */
  reference: string;
  /** `sha256:…` of the linux/amd64 manifest (what is cached and what a VM records). */
  digest: string;
  /** The bootable root filesystem (ext4), read-only: VMs overlay it. */
  rootfs: string;
  unpackedBytes: number;
  rootfsBytes: number;
  /** From the image config: used to run commands the way the image's author meant. */
  config: { env: string[]; workingDir?: string; user?: string };
  /** Guest path of the runtime's interpreter, when the runtime needs one. */
  interpreter?: string;
  /** Whether the node had it already (false: this resolve pulled it, or joined a pull under way). */
  cached: boolean;
  /** The system package manager in the image (`/usr/bin/apt-get`, `/sbin/apk`), or none. */
  systemPackages?: 'apt' | 'apk' | 'none';
}

type ProgressListener = (phase: ImagePhase, detail?: string) => void;

interface InFlightPull {
  /** The phase the pull is in (told to whoever joins it). */
  now: { phase: ImagePhase };
  listeners: Set<ProgressListener>;
  done: Promise<StoredImage>;
}

interface StoredImage {
  reference: string;
  digest: string;
  unpackedBytes: number;
  rootfsBytes: number;
  config: PulledImage['config'];
  /** Guest paths found at build time: `sh`, `python3`, `node`, `bash`, `aptGet`, `apk`. */
  found: Record<string, string | undefined>;
}

/**
 * Turns OCI image references into bootable guest root filesystems, cached by manifest digest.
 *
 * A pull is `skopeo copy` (it verifies every blob against its digest, reads Docker and OCI
 * manifests and indexes, and takes registry credentials as a containers-auth file — the format
 * of an imagePullSecret's `.dockerconfigjson`), then `umoci raw unpack` (OCI layers with
 * whiteouts), then checks, then `mkfs.ext4 -d` into an image that VMs overlay copy-on-write.
 * Concurrent resolves of one digest share one pull; everything is built in a temp directory
 * renamed into place, so a crash leaves no half entry.
 */
export class OciImageStore {
  readonly #o: ImageStoreOptions;
  /** Pulls under way by digest: one per digest; each joiner hears its phases from then on. */
  readonly #inFlight = new Map<string, InFlightPull>();
  /** entry directory name → when it was last resolved (see `leaseMs`). */
  readonly #leases = new Map<string, number>();
  #swept: Promise<void> | undefined;
  #collecting: Promise<unknown> = Promise.resolve();

  constructor(o: ImageStoreOptions) {
    this.#o = o;
  }

  async resolve(
    image: string,
    opts: {
      runtime: Runtime;
      /** An imagePullSecret's `.dockerconfigjson`. */
      dockerConfigJson?: string;
      onProgress?: (phase: ImagePhase, detail?: string) => void;
    },
  ): Promise<PulledImage> {
    let ref: ImageReference;
    try {
      ref = parseImageReference(image);
    } catch (err) {
      if (err instanceof InvalidImageReference) throw new ImageError('invalid-reference', image, err.message);
      throw err;
    }
    const name = formatImageReference(ref);
    if (!isImageAllowed(ref, this.#o.allowList)) {
      throw new ImageError(
        'not-allowed',
        name,
        `image "${name}" is not on this cluster's image allow-list (${this.#o.allowList.join(', ') || 'empty'}); ask the cluster admin to allow it or use a template`,
      );
    }
    this.#swept ??= this.#sweep();
    await this.#swept;
    const stored = await this.#withAuthFile(opts.dockerConfigJson, async (authFile) => {
      opts.onProgress?.('resolving', name);
      const digest = await this.#platformDigest(ref, name, authFile);
      // Leased before it is read: a collect() running meanwhile must not take it from under us.
      this.#leases.set(this.#entryName(digest), Date.now());
      const cached = await this.#readEntry(digest);
      if (cached) {
        opts.onProgress?.('cached', digest);
        return { ...cached, cached: true };
      }
      let pull = this.#inFlight.get(digest);
      const joined = pull !== undefined;
      if (!pull) {
        const listeners = new Set<ProgressListener>();
        const now = { phase: 'pulling' as ImagePhase };
        const done = this.#pull(ref, name, digest, authFile, (phase, detail) => {
          now.phase = phase;
          for (const l of listeners) l(phase, detail);
        }).finally(() => this.#inFlight.delete(digest));
        pull = { now, listeners, done };
        this.#inFlight.set(digest, pull);
      }
      const listener = opts.onProgress;
      if (listener) {
        pull.listeners.add(listener);
        if (joined) listener(pull.now.phase, name); // a joiner hears where the shared pull is now
      }
      try {
        return { ...(await pull.done), cached: false };
      } finally {
        if (listener) pull.listeners.delete(listener);
      }
    });
    this.#leases.set(this.#entryName(stored.digest), Date.now());
    await this.#touch(stored.digest);
    if (this.#o.rememberReferences) await this.#remember(name, stored.digest);
    return { ...this.#check(stored, name, opts.runtime), cached: stored.cached };
  }

  /**
   * What `reference` resolved to the last time it could be resolved here, if that is still in the
   * cache: for starting without the registry (it is down, the node rebooted before it) when a
   * moved tag matters less than running at all. Undefined when never resolved or collected since.
   */
  async lastResolved(reference: string, runtime: Runtime): Promise<PulledImage | undefined> {
    const name = formatImageReference(parseImageReference(reference));
    const digest = await readFile(this.#refPath(name), 'utf8').catch(() => undefined);
    if (!digest || !/^sha256:[a-f0-9]{64}$/.test(digest.trim())) return undefined;
    const stored = await this.#readEntry(digest.trim());
    if (!stored) return undefined;
    this.#leases.set(this.#entryName(stored.digest), Date.now());
    return { ...this.#check(stored, name, runtime), cached: true };
  }

  #refPath(name: string) {
    return join(this.#o.cacheDir, '.refs', createHash('sha256').update(name).digest('hex'));
  }

  async #remember(name: string, digest: string) {
    const path = this.#refPath(name);
    await mkdir(join(path, '..'), { recursive: true });
    const tmp = `${path}.${randomBytes(4).toString('hex')}`;
    await writeFile(tmp, digest);
    await rename(tmp, path);
  }

  /** Removes what a crash mid-pull left: temp directories and credential files. */
  async #sweep(): Promise<void> {
    await mkdir(this.#o.cacheDir, { recursive: true });
    for (const n of await readdir(this.#o.cacheDir)) {
      if (n.startsWith('.tmp-')) await rm(join(this.#o.cacheDir, n), { recursive: true, force: true });
    }
    const secrets = this.#secretsDir();
    for (const n of await readdir(secrets).catch(() => [] as string[])) {
      if (n.startsWith('waggle-pull-')) await rm(join(secrets, n), { recursive: true, force: true });
    }
  }

  #secretsDir() {
    return this.#o.secretsDir ?? '/dev/shm';
  }

  /**
   * Removes least recently used entries until the cache fits, never one in use, being pulled or
   * resolved within `leaseMs`. Returns what went. The agent runs it after a VM is registered and
   * periodically.
   */
  async collect(): Promise<string[]> {
    // One collection at a time (the 10-minute timer and a create may both start one).
    const run = this.#collecting.then(() => this.#collectOnce());
    this.#collecting = run.catch(() => undefined);
    return run;
  }

  /** Entry directories no VM uses, no resolve has leased within leaseMs, and no pull builds. */
  #protected(): (dir: string, digest: string) => boolean {
    const inUse = new Set<string>();
    for (const rootfs of this.#o.inUse()) inUse.add(join(rootfs, '..'));
    const leaseMs = this.#o.leaseMs ?? 10 * 60_000;
    for (const [entry, at] of this.#leases) {
      if (Date.now() - at < leaseMs) inUse.add(join(this.#o.cacheDir, entry));
      else this.#leases.delete(entry);
    }
    return (dir, digest) => inUse.has(dir) || (dir === this.#dir(digest) && this.#inFlight.has(digest));
  }

  async #collectOnce(): Promise<string[]> {
    const entries = [];
    for (const entry of await readdir(this.#o.cacheDir).catch(() => [] as string[])) {
      if (!ENTRY_NAME.test(entry)) continue;
      const dir = join(this.#o.cacheDir, entry);
      const meta = await this.#readEntryAt(dir);
      if (!meta) continue;
      const used = await stat(join(dir, 'last-used')).catch(() => undefined);
      entries.push({ dir, digest: meta.digest, bytes: meta.rootfsBytes, usedAt: used?.mtimeMs ?? 0 });
    }
    let total = entries.reduce((n, e) => n + e.bytes, 0);
    const removed: string[] = [];
    for (const e of entries.sort((a, b) => a.usedAt - b.usedAt)) {
      if (total <= this.#o.maxCacheBytes) break;
      // Asked again right before each removal: a resolve may have leased it since the listing.
      // Renamed away first (synchronously after the check), then removed.
      if (this.#protected()(e.dir, e.digest)) continue;
      const doomed = join(this.#o.cacheDir, `.tmp-gc-${randomBytes(4).toString('hex')}`);
      try {
        renameSync(e.dir, doomed);
      } catch {
        continue; // gone already
      }
      await rm(doomed, { recursive: true, force: true });
      total -= e.bytes;
      removed.push(e.digest);
      this.#o.log.info({ digest: e.digest, bytes: e.bytes, entry: e.dir }, 'image cache entry removed');
    }
    return removed;
  }

  #entryName(digest: string) {
    const hex = digest.replace(/^sha256:/, '');
    return this.#o.toolbox ? `${hex}-${this.#o.toolbox.id}` : hex;
  }

  #dir(digest: string) {
    return join(this.#o.cacheDir, this.#entryName(digest));
  }

  #tlsArgs(ref: ImageReference, flag: string): string[] {
    return this.#o.insecureRegistries.includes(ref.registry) ? [`${flag}=false`] : [];
  }

  async #withAuthFile<T>(
    dockerConfigJson: string | undefined,
    fn: (authFile?: string) => Promise<T>,
  ): Promise<T> {
    if (dockerConfigJson === undefined) return fn(undefined);
    const dir = join(this.#secretsDir(), `waggle-pull-${randomBytes(8).toString('hex')}`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      const file = join(dir, 'auth.json');
      await writeFile(file, dockerConfigJson, { mode: 0o600 });
      return await fn(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async #skopeo(ref: ImageReference, name: string, args: string[]): Promise<Buffer> {
    // No credentials but the call's own: HOME, DOCKER_CONFIG and XDG_RUNTIME_DIR point at an
    // empty directory, so the node's ~/.docker/config.json or containers auth.json never serve
    // a tenant's pull.
    const empty = join(this.#o.cacheDir, '.no-credentials');
    await mkdir(empty, { recursive: true, mode: 0o700 });
    try {
      const { stdout } = await run('skopeo', args, {
        encoding: 'buffer',
        maxBuffer: 64 << 20,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: empty,
          DOCKER_CONFIG: empty,
          XDG_RUNTIME_DIR: empty,
        },
      });
      return stdout;
    } catch (err) {
      const e = err as { code?: string; stderr?: Buffer };
      if (e.code === 'ENOENT')
        throw new Error('skopeo is not installed on this node (apt-get install skopeo)');
      throw skopeoFailure(name, ref.registry, e.stderr?.toString() ?? String(err));
    }
  }

  /** The repository pinned to a digest, or at its tag (skopeo refuses both at once). */
  #source(ref: ImageReference, digest?: string): string {
    const at = digest ?? ref.digest;
    return `docker://${ref.registry}/${ref.repository}${at ? `@${at}` : `:${ref.tag ?? 'latest'}`}`;
  }

  /**
   * The digest of the linux/amd64 manifest, read without pulling a layer; refuses an image whose
   * compressed layers alone exceed `maxImageBytes` before anything is downloaded.
   */
  async #platformDigest(ref: ImageReference, name: string, authFile?: string): Promise<string> {
    const inspect = async (digest?: string) => {
      const raw = await this.#skopeo(ref, name, [
        'inspect',
        '--raw',
        ...this.#tlsArgs(ref, '--tls-verify'),
        ...(authFile ? ['--authfile', authFile] : ['--no-creds']),
        this.#source(ref, digest),
      ]);
      try {
        return { raw, manifest: JSON.parse(raw.toString()) as RawManifest };
      } catch {
        throw new ImageError(
          'not-an-image',
          name,
          `"${name}" is not an OCI or Docker container image: its manifest is not JSON`,
        );
      }
    };
    const first = await inspect();
    let manifest = first.manifest;
    let digest = `sha256:${createHash('sha256').update(first.raw).digest('hex')}`;
    if (INDEX_TYPES.has(manifest.mediaType ?? '') || Array.isArray(manifest.manifests)) {
      const entry = manifest.manifests?.find(
        (m) => m.platform?.os === 'linux' && m.platform.architecture === 'amd64',
      );
      if (!entry) {
        const have = (manifest.manifests ?? [])
          .map((m) => `${m.platform?.os}/${m.platform?.architecture}`)
          .join(', ');
        throw new ImageError(
          'wrong-architecture',
          name,
          `image "${name}" has no linux/amd64 variant (it has: ${have || 'none'}); this node's microVMs are linux/amd64`,
        );
      }
      if (!DIGEST.test(entry.digest)) {
        throw new ImageError('not-an-image', name, `"${name}" lists a malformed manifest digest`);
      }
      digest = entry.digest;
      manifest = (await inspect(digest)).manifest;
    }
    const configType = manifest.config?.mediaType;
    if (configType !== undefined && !IMAGE_CONFIG_TYPES.has(configType)) {
      throw new ImageError(
        'not-an-image',
        name,
        `"${name}" is not a container image: its config is ${configType.slice(0, 200)} (an OCI artifact, such as a Helm chart); name an image`,
      );
    }
    const compressed = (manifest.layers ?? []).reduce((n, l) => n + (Number(l.size) || 0), 0);
    if (compressed > this.#o.maxImageBytes) {
      throw new ImageError(
        'too-large',
        name,
        `image "${name}" has ${mib(compressed)} MiB of compressed layers, more than this node accepts (${mib(this.#o.maxImageBytes)} MiB unpacked)`,
      );
    }
    return digest;
  }

  async #readEntry(digest: string): Promise<StoredImage | undefined> {
    return this.#readEntryAt(this.#dir(digest));
  }

  async #readEntryAt(dir: string): Promise<StoredImage | undefined> {
    const text = await readFile(join(dir, 'image.json'), 'utf8').catch(() => undefined);
    return text === undefined ? undefined : (JSON.parse(text) as StoredImage);
  }

  async #touch(digest: string) {
    const now = new Date();
    await utimes(join(this.#dir(digest), 'last-used'), now, now).catch(() => undefined);
  }

  async #pull(
    ref: ImageReference,
    name: string,
    digest: string,
    authFile: string | undefined,
    onProgress?: (phase: ImagePhase, detail?: string) => void,
  ): Promise<StoredImage> {
    const log = this.#o.log.child({ image: name, digest });
    const tmp = join(this.#o.cacheDir, `.tmp-${digest.slice(7, 19)}-${randomBytes(4).toString('hex')}`);
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    const t0 = Date.now();
    try {
      onProgress?.('pulling', name);
      await this.#skopeo(ref, name, [
        'copy',
        '--quiet',
        '--override-os=linux',
        '--override-arch=amd64',
        ...this.#tlsArgs(ref, '--src-tls-verify'),
        ...(authFile ? ['--src-authfile', authFile] : ['--src-no-creds']),
        this.#source(ref, digest),
        `oci:${join(tmp, 'layout')}:image`,
      ]);
      const pulledMs = Date.now() - t0;
      const config = await readImageConfig(join(tmp, 'layout'), name);
      onProgress?.('unpacking', name);
      const rootfs = join(tmp, 'rootfs');
      await this.#unpackBounded(join(tmp, 'layout'), rootfs, name);
      await rm(join(tmp, 'layout'), { recursive: true, force: true });
      const { bytes: unpackedBytes, inodes } = await diskUsage(rootfs);
      if (unpackedBytes > this.#o.maxImageBytes) {
        throw new ImageError(
          'too-large',
          name,
          `image "${name}" unpacks to ${mib(unpackedBytes)} MiB, more than this node accepts (${mib(this.#o.maxImageBytes)} MiB)`,
        );
      }
      const imagePath =
        config.env
          .find((e) => e.startsWith('PATH='))
          ?.slice(5)
          .split(':') ?? [];
      const path = [...imagePath.filter((d) => d.startsWith('/')), ...DEFAULT_PATH];
      const found: StoredImage['found'] = {
        sh: (await executableInRoot(rootfs, '/bin/sh')) ? '/bin/sh' : undefined,
        python3: await findInRoot(rootfs, 'python3', path),
        node: await findInRoot(rootfs, 'node', path),
        bash: await findInRoot(rootfs, 'bash', path),
        // The system package manager the shell runtime installs with (Debian/Ubuntu or Alpine).
        aptGet: (await executableInRoot(rootfs, '/usr/bin/apt-get')) ? '/usr/bin/apt-get' : undefined,
        apk: (await executableInRoot(rootfs, '/sbin/apk')) ? '/sbin/apk' : undefined,
      };
      onProgress?.('building', name);
      await prepareImageRoot(rootfs);
      if (this.#o.toolbox) {
        // Whatever the image has at /.waggle (a directory, a file, a planted symlink) goes first:
        // the copy must land inside the image, and the init that runs as PID 1 must be ours.
        await rm(join(rootfs, '.waggle'), { recursive: true, force: true });
        await cp(this.#o.toolbox.dir, join(rootfs, '.waggle'), {
          recursive: true,
          preserveTimestamps: true,
          verbatimSymlinks: true,
        });
      }
      const built = this.#o.toolbox ? await diskUsage(rootfs) : { bytes: unpackedBytes, inodes };
      // Room for the guest's first writes before the overlay grows the filesystem at boot.
      const rootfsBytes = Math.ceil((built.bytes * 1.15 + (64 << 20)) / (1 << 20)) << 20;
      await run('mkfs.ext4', [
        '-q',
        '-F',
        // No reserved blocks, and inode tables and journal written now: lazy initialisation
        // would write them from inside every guest (copy-on-write into its overlay, CPU under TCG).
        '-m',
        '0',
        '-E',
        'lazy_itable_init=0,lazy_journal_init=0',
        '-L',
        'waggle-root',
        '-d',
        rootfs,
        '-N',
        String(Math.ceil(built.inodes * 1.2) + 4096),
        join(tmp, 'rootfs.ext4'),
        `${rootfsBytes >> 10}K`,
      ]).catch((err: { stderr?: string; message: string }) => {
        throw new ImageError(
          'node-error',
          name,
          `this node could not store image "${name}": mkfs.ext4 failed: ${(err.stderr ?? err.message).trim()}`,
        );
      });
      await rm(rootfs, { recursive: true, force: true });
      const stored: StoredImage = { reference: name, digest, unpackedBytes, rootfsBytes, config, found };
      await writeFile(join(tmp, 'image.json'), `${JSON.stringify(stored, null, 2)}\n`);
      await writeFile(join(tmp, 'last-used'), '');
      await rename(tmp, this.#dir(digest)).catch(async (err: NodeJS.ErrnoException) => {
        // Another agent process built it meanwhile: keep theirs.
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
        await rm(tmp, { recursive: true, force: true });
      });
      log.info({ pulledMs, totalMs: Date.now() - t0, unpackedBytes }, 'image pulled');
      return stored;
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * `umoci raw unpack`, watched: layers may decompress far beyond their compressed size (a
   * decompression bomb) and the cache shares the node's disk with VM overlays. Every 250 ms the
   * cache filesystem's free space is read; when it has dropped by more than the image may take
   * (maxImageBytes + 64 MiB of slack), the tree itself is measured (other writers share the
   * disk: their bytes must not be blamed on this image) and umoci is killed if the tree is over
   * (`too-large`). It is also killed when the disk gets down to its reserve (2 % of the disk, at
   * most 1 GiB) or, on filesystems that count inodes, below 10,000 free inodes (`node-error`).
   * The kill waits for umoci to exit before the caller removes the partial tree.
   */
  async #unpackBounded(layout: string, rootfs: string, name: string): Promise<void> {
    const statNow = async () => {
      const st = await statfs(this.#o.cacheDir);
      return {
        free: st.bavail * st.bsize,
        size: st.blocks * st.bsize,
        inodes: st.ffree,
        countsInodes: st.files > 0,
      };
    };
    const start = await statNow();
    const reserve = Math.min(1 << 30, Math.floor(start.size / 50));
    const limit = this.#o.maxImageBytes + (64 << 20);
    let baseline = start.free;
    let stopped: ImageError | undefined;
    let checking = false;
    const child = execFile('umoci', ['raw', 'unpack', '--image', `${layout}:image`, rootfs], {
      maxBuffer: 16 << 20,
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-8192);
    });
    const exited = new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve(code));
    });
    const stop = (err: ImageError) => {
      stopped ??= err;
      child.kill('SIGKILL');
    };
    const watch = setInterval(() => {
      if (checking || stopped) return;
      checking = true;
      void (async () => {
        const now = await statNow();
        if (now.free < reserve || (now.countsInodes && now.inodes < 10_000)) {
          stop(
            new ImageError(
              'node-error',
              name,
              `this node could not store image "${name}": its image cache disk is nearly full (${mib(now.free)} MiB${now.countsInodes ? `, ${now.inodes} inodes` : ''} free)`,
            ),
          );
        } else if (baseline - now.free > limit) {
          const tree = await diskUsage(rootfs).catch(() => undefined);
          if (tree && tree.bytes > limit) {
            stop(
              new ImageError(
                'too-large',
                name,
                `image "${name}" unpacks to more than this node accepts (${mib(this.#o.maxImageBytes)} MiB); stopped while unpacking`,
              ),
            );
          } else if (tree) {
            baseline = now.free + tree.bytes; // the rest was someone else's
          }
        }
      })()
        .catch(() => undefined)
        .finally(() => {
          checking = false;
        });
    }, 250);
    try {
      const code = await exited;
      if (stopped) throw stopped;
      if (code !== 0) {
        if (/no space left on device|disk quota exceeded/i.test(stderr)) {
          throw new ImageError(
            'node-error',
            name,
            `this node could not store image "${name}": ${stderr.trim()}`,
          );
        }
        throw new ImageError('not-an-image', name, `unpacking image "${name}" failed: ${stderr.trim()}`);
      }
    } finally {
      clearInterval(watch);
    }
  }

  #check(stored: StoredImage, name: string, runtime: Runtime): Omit<PulledImage, 'cached'> {
    if (!stored.found.sh) {
      throw new ImageError(
        'missing-shell',
        name,
        `image "${name}" has no /bin/sh: Waggle runs every command through a POSIX shell; base the image on one that has it (Debian, Ubuntu, Alpine, …)`,
      );
    }
    const wanted = INTERPRETERS[runtime];
    // The shell runtime runs bash where the image has it (as the built-in image does), else sh.
    const interpreter = wanted ? stored.found[wanted] : (stored.found.bash ?? stored.found.sh);
    if (wanted && !interpreter) {
      throw new ImageError(
        'missing-interpreter',
        name,
        `image "${name}" has no ${wanted} on its PATH, which the ${runtime} runtime runs code with: install it in the image or pick the runtime the image was built for`,
      );
    }
    return {
      reference: name,
      digest: stored.digest,
      rootfs: join(this.#dir(stored.digest), 'rootfs.ext4'),
      unpackedBytes: stored.unpackedBytes,
      rootfsBytes: stored.rootfsBytes,
      config: stored.config,
      ...(interpreter ? { interpreter } : {}),
      // Entries built before this was recorded say nothing: apt, as for the built-in images.
      systemPackages:
        !('aptGet' in stored.found) && !('apk' in stored.found)
          ? 'apt'
          : stored.found.aptGet
            ? 'apt'
            : stored.found.apk
              ? 'apk'
              : 'none',
    };
  }
}

/**
 * The image's root directory is root's and not writable by others: the guest's root runs the
 * toolbox from /.waggle, and in a world-writable / (an image built carelessly) the sandbox user
 * could rename /.waggle away and plant its own helpers.
 *
 * The directories the guest's boot mounts on (the initramfs moves /dev; the init mounts /proc,
 * /sys, /run, /tmp): images may lack them (scratch) or have something else there, such as a
 * symlink a mount would follow out of the image. Each becomes a plain directory of the image.
 */
const MOUNT_POINTS = { dev: 0o755, proc: 0o555, sys: 0o555, run: 0o755, tmp: 0o1777 } as const;
export async function prepareImageRoot(root: string): Promise<void> {
  await chown(root, 0, 0);
  await chmod(root, 0o755);
  for (const [name, mode] of Object.entries(MOUNT_POINTS)) {
    const path = join(root, name);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isDirectory()) continue;
    if (st) await rm(path, { recursive: true, force: true });
    await mkdir(path, { mode });
    await chmod(path, mode); // mkdir's mode is masked by the umask
  }
}

const mib = (b: number) => Math.ceil(b / (1 << 20));
const ENTRY_NAME = /^[a-f0-9]{64}(-[a-z0-9-]+)?$/;

/** Allocated bytes (what ext4 will need, small files included) and the number of inodes. */
async function diskUsage(dir: string): Promise<{ bytes: number; inodes: number }> {
  const first = async (args: string[]) => Number((await run('du', [...args, dir])).stdout.split('\t')[0]);
  return { bytes: await first(['-s', '--block-size=1']), inodes: await first(['-s', '--inodes']) };
}

/** The image config of the layout's one manifest; refuses another OS or architecture. */
async function readImageConfig(layout: string, name: string): Promise<PulledImage['config']> {
  const blob = async (digest: string) =>
    JSON.parse(await readFile(join(layout, 'blobs', ...digest.split(':')), 'utf8')) as Record<
      string,
      unknown
    >;
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const manifest = (await blob(index.manifests[0]?.digest ?? '')) as { config?: { digest: string } };
  if (!manifest.config)
    throw new ImageError('not-an-image', name, `"${name}" has no image config: it is not a container image`);
  const config = (await blob(manifest.config.digest)) as {
    os?: string;
    architecture?: string;
    config?: { Env?: string[]; WorkingDir?: string; User?: string };
  };
  if ((config.os ?? 'linux') !== 'linux' || (config.architecture ?? 'amd64') !== 'amd64') {
    throw new ImageError(
      'wrong-architecture',
      name,
      `image "${name}" is built for ${config.os}/${config.architecture}; this node's microVMs are linux/amd64`,
    );
  }
  return {
    env: config.config?.Env ?? [],
    ...(config.config?.WorkingDir ? { workingDir: config.config.WorkingDir } : {}),
    ...(config.config?.User ? { user: config.config.User } : {}),
  };
}
