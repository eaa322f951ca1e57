import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildImage, type Layer, type LocalRegistry, push, startRegistry } from '@waggle/test';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageError } from '../src/images/image-errors.ts';
import { type ImagePhase, OciImageStore } from '../src/images/oci-image-store.ts';

// Real parts: the CNCF distribution registry (built from its Go module) on loopback, images
// built here with umoci and pushed with skopeo, pulled by the store with skopeo + umoci into
// ext4 images read back with debugfs. Nothing leaves the machine.
const run = promisify(execFile);
let work = '';
let registry: LocalRegistry;
let privateRegistry: LocalRegistry;
const log = pino({ level: 'silent' });

/** Paths in the ext4 image's /bin and /etc, read without mounting it. */
async function ext4List(image: string, dir: string): Promise<string[]> {
  const { stdout } = await run('debugfs', ['-R', `ls -p ${dir}`, image]);
  return stdout
    .split('\n')
    .map((l) => l.split('/')[5])
    .filter((n): n is string => !!n && n !== '.' && n !== '..');
}

function store(opts: Partial<ConstructorParameters<typeof OciImageStore>[0]> = {}) {
  return new OciImageStore({
    cacheDir: join(work, `cache-${Math.random().toString(36).slice(2)}`),
    maxCacheBytes: 1 << 30,
    maxImageBytes: 256 << 20,
    allowList: ['*'],
    insecureRegistries: [registry.host, privateRegistry.host],
    inUse: () => [],
    log,
    ...opts,
  });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'waggle-oci-'));
  registry = await startRegistry();
  privateRegistry = await startRegistry({ auth: { user: 'puller', password: 'p4ss-word' } });
  const shellImage: Layer[] = [
    { '/bin/busybox': { from: '/bin/busybox' }, '/bin/sh': { link: 'busybox' }, '/etc/secret': 'top' },
    { '/etc/secret': null, '/usr/local/bin/python3': '#!/bin/sh\n' },
  ];
  await push(await buildImage(work, 'py', shellImage), `${registry.host}/waggle/py:1`);
  // Compresses to almost nothing, unpacks to 8 MiB more.
  const zeros = { '/zeros': '\0'.repeat(8 << 20) };
  await push(
    await buildImage(work, 'zeros', [shellImage[0] as Layer, zeros]),
    `${registry.host}/waggle/zeros:1`,
  );
  await push(await buildImage(work, 'nosh', [{ '/hello': 'hi' }]), `${registry.host}/waggle/nosh:1`);
  // A decompression bomb: 1 GiB of zeros in a layer of about 1 MiB.
  const bomb = join(work, 'bomb');
  await run('truncate', ['-s', '1G', bomb]);
  await push(
    await buildImage(work, 'bomb', [shellImage[0] as Layer, { '/bomb': { from: bomb } }]),
    `${registry.host}/waggle/bomb:1`,
  );
  await rm(bomb);
  await push(
    await buildImage(work, 'arm', shellImage, { architecture: 'arm64' }),
    `${registry.host}/waggle/arm:1`,
  );
  await push(await buildImage(work, 'onlysh', [shellImage[0] as Layer]), `${registry.host}/waggle/sh:1`);
  await pushArtifact(registry.host, 'waggle/chart', '1');
  const auth = join(work, 'auth.json');
  await writeFile(auth, privateRegistry.dockerConfigJson as string);
  await push(await buildImage(work, 'private', shellImage), `${privateRegistry.host}/team/py:1`, auth);
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await privateRegistry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** An OCI artifact that is no container image (a Helm chart's shape), pushed with the registry API. */
async function pushArtifact(host: string, repo: string, tag: string) {
  const blob = async (body: string) => {
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const started = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    const location = new URL(started.headers.get('location') ?? '', `http://${host}`);
    location.searchParams.set('digest', digest);
    const r = await fetch(location, {
      method: 'PUT',
      body,
      headers: { 'content-type': 'application/octet-stream' },
    });
    if (r.status !== 201) throw new Error(`blob upload: HTTP ${r.status} ${await r.text()}`);
    return { digest, size: Buffer.byteLength(body) };
  };
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.cncf.helm.config.v1+json',
      ...(await blob('{"name":"x","version":"1.0.0"}')),
    },
    layers: [
      { mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip', ...(await blob('chart bytes')) },
    ],
  };
  const r = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    headers: { 'content-type': manifest.mediaType },
    body: JSON.stringify(manifest),
  });
  if (r.status !== 201) throw new Error(`manifest upload: HTTP ${r.status} ${await r.text()}`);
}

const reasonOf = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e instanceof ImageError ? `${e.reason}: ${e.message}` : `other: ${e}`),
  );

describe('OCI images into guest root filesystems (real registry, skopeo, umoci)', () => {
  it('pulls once, applies whiteouts, builds an ext4 and serves later resolves from the cache', async () => {
    const logged: string[] = [];
    const s = store({ log: pino({ level: 'info' }, { write: (line: string) => logged.push(line) }) });
    const heard: [ImagePhase[], ImagePhase[]] = [[], []];
    const ref = `${registry.host}/waggle/py:1`;
    const [a, b] = await Promise.all(
      heard.map((phases) => s.resolve(ref, { runtime: 'python', onProgress: (p) => phases.push(p) })),
    );
    expect(a?.rootfs).toBe(b?.rootfs);
    if (!a || !b) throw new Error('unreachable');
    expect(a.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(a.interpreter).toBe('/usr/local/bin/python3');
    expect([a.cached, b.cached]).toEqual([false, false]);
    // Concurrent resolves share one pull, and both callers hear its phases through to the end.
    expect(logged.filter((l) => JSON.parse(l).msg === 'image pulled')).toHaveLength(1);
    for (const phases of heard) expect(phases.slice(-2)).toEqual(['unpacking', 'building']);
    expect(await ext4List(a.rootfs, '/bin')).toEqual(expect.arrayContaining(['busybox', 'sh']));
    expect(await ext4List(a.rootfs, '/etc')).not.toContain('secret'); // the second layer's whiteout
    expect((await stat(a.rootfs)).size).toBe(a.rootfsBytes);

    const phases: ImagePhase[] = [];
    const c = await s.resolve(ref, { runtime: 'shell', onProgress: (p) => phases.push(p) });
    expect(c.rootfs).toBe(a.rootfs);
    expect(c.cached).toBe(true);
    expect(phases).toEqual(['resolving', 'cached']);
    // Tag and digest together (skopeo takes only one): pinned by the digest.
    const pinned = await s.resolve(`${ref}@${a.digest}`, { runtime: 'shell' });
    expect(pinned.rootfs).toBe(a.rootfs);
  });

  it('says clearly what is wrong with a bad image, naming it', async () => {
    const s = store();
    const r = registry.host;
    expect(await reasonOf(s.resolve(`${r}/waggle/nope:1`, { runtime: 'shell' }))).toMatch(
      new RegExp(`^not-found: image "${r}/waggle/nope:1" was not found`),
    );
    expect(await reasonOf(s.resolve(`${r}/waggle/nosh:1`, { runtime: 'shell' }))).toMatch(
      /^missing-shell: image ".*nosh:1" has no \/bin\/sh/,
    );
    expect(await reasonOf(s.resolve(`${r}/waggle/sh:1`, { runtime: 'node' }))).toMatch(
      /^missing-interpreter: image ".*sh:1" has no node on its PATH, which the node runtime runs code with/,
    );
    expect(await reasonOf(s.resolve(`${r}/waggle/sh:1`, { runtime: 'shell' }))).toBe('resolved');
    expect(await reasonOf(s.resolve(`${r}/waggle/arm:1`, { runtime: 'shell' }))).toMatch(
      /^wrong-architecture: image ".*arm:1" is built for linux\/arm64/,
    );
    expect(await reasonOf(s.resolve('Not An Image', { runtime: 'shell' }))).toMatch(/^invalid-reference: /);
    expect(await reasonOf(s.resolve(`${r}/waggle/chart:1`, { runtime: 'shell' }))).toMatch(
      /^not-an-image: ".*chart:1" is not a container image: its config is application\/vnd\.cncf\.helm\.config\.v1\+json/,
    );
    expect(
      await reasonOf(store({ allowList: ['ghcr.io/org'] }).resolve(`${r}/waggle/py:1`, { runtime: 'shell' })),
    ).toMatch(/^not-allowed: image ".*py:1" is not on this cluster's image allow-list \(ghcr.io\/org\)/);
    // Refused from the manifest before a byte is pulled, and after unpacking when only the
    // unpacked size is over.
    const phases: ImagePhase[] = [];
    expect(
      await reasonOf(
        store({ maxImageBytes: 64 << 10 }).resolve(`${r}/waggle/py:1`, {
          runtime: 'shell',
          onProgress: (p) => phases.push(p),
        }),
      ),
    ).toMatch(
      /^too-large: image ".*py:1" has \d MiB of compressed layers, more than this node accepts \(1 MiB unpacked\)/,
    );
    expect(phases).not.toContain('pulling');
    expect(
      await reasonOf(store({ maxImageBytes: 4 << 20 }).resolve(`${r}/waggle/zeros:1`, { runtime: 'shell' })),
    ).toMatch(/^too-large: image ".*zeros:1" unpacks to 1\d MiB, more than this node accepts \(4 MiB\)/);
  });

  it('stops unpacking a decompression bomb early and leaves nothing behind', {
    timeout: 120_000,
  }, async () => {
    const s = store({ maxImageBytes: 16 << 20 });
    expect(await reasonOf(s.resolve(`${registry.host}/waggle/bomb:1`, { runtime: 'shell' }))).toMatch(
      /^too-large: image ".*bomb:1" unpacks to more than this node accepts \(16 MiB\); stopped while unpacking/,
    );
    // The partial tree went with its temp dir.
    const cache = (await readdir(work)).filter((n) => n.startsWith('cache-'));
    for (const c of cache)
      expect((await readdir(join(work, c))).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  });

  it('pulls a private image only with credentials, which never stay on disk', async () => {
    const s = store();
    const ref = `${privateRegistry.host}/team/py:1`;
    expect(await reasonOf(s.resolve(ref, { runtime: 'python' }))).toMatch(
      /^unauthorized: the registry refused to serve image ".*team\/py:1" without valid credentials/,
    );
    const wrong = JSON.stringify({
      auths: { [privateRegistry.host]: { auth: Buffer.from('puller:wrong').toString('base64') } },
    });
    expect(await reasonOf(s.resolve(ref, { runtime: 'python', dockerConfigJson: wrong }))).toMatch(
      /^unauthorized/,
    );
    const ok = await s.resolve(ref, {
      runtime: 'python',
      dockerConfigJson: privateRegistry.dockerConfigJson as string,
    });
    expect(ok.interpreter).toBe('/usr/local/bin/python3');
    const left = await readdir(join(ok.rootfs, '..', '..'));
    expect(left.filter((n) => n.startsWith('.'))).toEqual(['.no-credentials']); // no temp dir
    expect(await readdir(join(ok.rootfs, '..', '..', '.no-credentials'))).toEqual([]);
    expect((await readdir('/dev/shm')).filter((n) => n.startsWith('waggle-pull-'))).toEqual([]);
  });

  it('keeps the cache under its bound, least recently used first, never removing an image in use', async () => {
    const inUse = new Set<string>();
    // Just resolved (within the lease): kept even when over the bound and unused.
    const leased = store({ maxCacheBytes: 1 << 20 });
    await leased.resolve(`${registry.host}/waggle/sh:1`, { runtime: 'shell' });
    expect(await leased.collect()).toEqual([]);

    const s = store({ maxCacheBytes: 100 << 20, inUse: () => inUse, leaseMs: 0 });
    const py = await s.resolve(`${registry.host}/waggle/py:1`, { runtime: 'shell' }); // ~66 MiB each
    inUse.add(py.rootfs);
    const sh = await s.resolve(`${registry.host}/waggle/sh:1`, { runtime: 'shell' });
    expect(await s.collect()).toEqual([sh.digest]); // py is older but in use
    inUse.clear();
    await s.resolve(`${registry.host}/waggle/sh:1`, { runtime: 'shell' }); // pulled again, now newest
    expect(await s.collect()).toEqual([py.digest]);
    await expect(stat(py.rootfs)).rejects.toThrow(/ENOENT/);
  });
});
