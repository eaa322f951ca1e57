import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildImage,
  busyboxLayer,
  ensureDebianTestImage,
  ensureGuestImages,
  ensureGuestToolbox,
  type LocalRegistry,
  push,
  startRegistry,
  waitFor,
} from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent.ts';
import { ImageError } from '../src/images/image-errors.ts';
import { OciImageStore } from '../src/images/oci-image-store.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import type { VMNetworks } from '../src/vm/network/vm-network.ts';
import { templateOf } from '../src/vm/template.ts';
import type { GuestImages, VMManager } from '../src/vm/vm-manager.ts';

import { testAgent, testLog, testManager, testNetworks } from './vm-fixtures.ts';

// Real parts: a CNCF distribution registry on loopback, images built here with umoci, the
// node's image store (skopeo, umoci, mkfs.ext4) with Waggle's guest toolbox, real QEMU microVMs
// booted from those images, real SSH to the toolbox's sshd. Nothing leaves the machine.
let work = '';
let stateDir = '';
let registry: LocalRegistry;
let networks: VMNetworks;
let images: GuestImages;
let vms: VMManager;
let agent: Agent;
let store: OciImageStore;

/** busybox and nothing else: no libc, no /etc, no sshd, no bash: the toolbox must bring it all. */
const bbLayer = busyboxLayer();

const spec = (vmId: string, image: string, runtime: 'shell' | 'python' = 'shell') => ({
  vmId,
  runtime,
  cpus: 1,
  memoryMiB: runtime === 'python' ? 512 : 256,
  diskMiB: 1024,
  egress: 'none' as const,
  allowDomains: [],
  image,
});

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'waggle-oci-vms-'));
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-oci-vms-state-'));
  images = await ensureGuestImages([]);
  const toolbox = await ensureGuestToolbox();
  registry = await startRegistry();
  // Its own tool in /opt/tools/bin, found by name through the image's PATH.
  await push(
    await buildImage(
      work,
      'bb',
      [bbLayer, { '/opt/tools/bin/hello-tool': '#!/bin/sh\necho "tool says $1"\n' }],
      {
        env: ['PATH=/opt/tools/bin:/usr/local/bin:/usr/bin:/bin'],
      },
    ),
    `${registry.host}/tenant/busybox:1`,
  );
  // Alpine's layout as far as Waggle cares: /sbin/apk (a stand-in that says how it was called;
  // this machine reaches no Alpine mirror or registry).
  await push(
    await buildImage(work, 'apk', [bbLayer, { '/sbin/apk': '#!/bin/sh\necho "apk $* (uid $(id -u))"\n' }]),
    `${registry.host}/tenant/alpine-like:1`,
  );
  // A hostile image: / is world-writable (the sandbox user could swap /.waggle; Debian 12's
  // mkfs.ext4 -d writes the root inode 0755 regardless, so prepare-image-root.test.ts is what
  // catches a store that forgets to close it), /.waggle and
  // /dev are links to /etc (the toolbox copy and the boot's mounts must land inside the image,
  // not follow them), /tmp is a file, root's shell is nologin, and the sandbox account is locked.
  await push(
    await buildImage(
      work,
      'hostile',
      [
        bbLayer,
        {
          '/.waggle': { link: '/etc' },
          '/dev': { link: '/etc' },
          '/tmp': 'not a directory',
          '/sbin/nologin': '#!/bin/sh\necho "This account is not available"\nexit 1\n',
          // The image's own uid 1000 ("dev") is in the disk group: the sandbox must not inherit it.
          '/etc/passwd':
            'root:x:0:0:root:/root:/sbin/nologin\ndev:x:1000:1000::/home/dev:/bin/sh\nsandbox:x:1000:1000::/home/sandbox:/bin/sh\n',
          '/etc/group': 'root:x:0:\ndisk:x:6:dev\nsandbox:x:1000:\n',
          '/etc/shadow': 'root:!:19000::::::\nsandbox:!locked:19000::::::\n',
        },
      ],
      { rootMode: 0o777 },
    ),
    `${registry.host}/tenant/hostile:1`,
  );
  // How a team builds its data-science image: Debian with pandas preinstalled (~100 MiB).
  await push(
    await ensureDebianTestImage('python-pandas', ['python3-pandas']),
    `${registry.host}/tenant/data-science:1`,
  );
  networks = await testNetworks('10.253.236.0/24');
  vms = testManager({ stateDir, images, networks, tscKHz: await readHostTscKHz() });
  await vms.adopt();
  store = new OciImageStore({
    cacheDir: join(work, 'cache'),
    maxCacheBytes: 1 << 30,
    maxImageBytes: 1 << 30,
    allowList: [`${registry.host}/tenant/`],
    insecureRegistries: [registry.host],
    toolbox,
    inUse: () => vms.list().flatMap((vm) => (vm.image ? [vm.image.rootfs] : [])),
    log: testLog,
  });
  // Room for the VMs the tests keep running plus a warm pool's VM.
  agent = testAgent(vms, 'oci-node', { capacity: { vms: 4, cpus: 4, memoryMiB: 2048 } }, { images: store });
}, 900_000);

afterAll(async () => {
  for (const vm of vms?.list() ?? []) await vms.destroyInstance(vm.instanceId).catch(() => undefined);
  await registry?.stop();
  await networks?.removeHostTable();
  for (const d of [work, stateDir]) if (d) await rm(d, { recursive: true, force: true });
});

const sh = (vmId: string, code: string, timeoutMs = 60_000) =>
  agent.exec({ vmId, code, language: 'shell', timeoutMs });

describe('VMs from OCI images (real registry, real QEMU, the toolbox’s sshd)', () => {
  it('boots an image that has only busybox: code runs as the sandbox user, files and timeouts work', {
    timeout: 300_000,
  }, async () => {
    const vm = await agent.createVM(spec('oci-busybox', `${registry.host}/tenant/busybox:1`));
    expect(vm.state).toBe('running');
    expect(vm.image?.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(vm.image?.interpreter).toBe('/bin/sh'); // no bash in the image

    const r = await sh('oci-busybox', 'echo "hello from $(id -u):$(id -g) in $PWD"; ls -a /; hello-tool hi');
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('hello from 1000:1000 in /home/sandbox');
    expect(r.stdout.split('\n')).toEqual(expect.arrayContaining(['bin', '.waggle', 'home']));
    expect(r.stdout).toContain('tool says hi\n'); // the image's PATH

    await agent.writeFile('oci-busybox', 'notes/a.txt', Buffer.from('über\n'));
    expect((await agent.readFile('oci-busybox', 'notes/a.txt')).data.toString()).toBe('über\n');
    expect((await sh('oci-busybox', 'cat /home/sandbox/notes/a.txt')).stdout).toBe('über\n');

    // The timeout kill is the toolbox's pkill (the image has none).
    const slow = await sh('oci-busybox', 'echo started; sleep 60', 3_000);
    expect(slow.timedOut).toBe(true);
    expect(slow.stdout).toBe('started\n');
    expect((await sh('oci-busybox', 'echo still here')).stdout).toBe('still here\n');
  });

  it('keeps the toolbox root’s: the sandbox user cannot replace the helpers root runs', {
    timeout: 120_000,
  }, async () => {
    const r = await sh(
      'oci-busybox',
      [
        'for f in /.waggle/bin/setpriv /.waggle/bin/sshd /.waggle/bin/waggle-init /.waggle/lib/libc.so.6; do',
        '  rm -f "$f" 2>/dev/null && echo "removed $f"',
        '  echo x 2>/dev/null > "$f" && echo "wrote $f"',
        'done',
        'mkdir /.waggle/bin/x 2>/dev/null && echo "created a directory"',
        'ln -s /tmp /.waggle/evil 2>/dev/null && echo "planted a link"',
        'echo done',
      ].join('\n'),
    );
    expect(r.stdout).toBe('done\n');
    // Root's next script still finds its helpers (a replaced setpriv would run as root).
    expect((await sh('oci-busybox', 'id -u')).stdout).toBe('1000\n');
  });

  it('boots a hostile image: /.waggle planted as a link, root’s shell nologin, accounts locked', {
    timeout: 300_000,
  }, async () => {
    const vm = await agent.createVM(spec('oci-hostile', `${registry.host}/tenant/hostile:1`));
    expect(vm.state).toBe('running');
    const r = await sh(
      'oci-hostile',
      'cat /etc/passwd; echo; ls /etc; ls -ld / /tmp; echo x > /tmp/t; mv /.waggle /home/sandbox/w 2>&1; ls /.waggle/bin/setpriv; cat /proc/self/status; id -u',
    );
    expect(r.exitCode).toBe(0);
    // The toolbox went into the image's /.waggle, not into /etc through the link.
    expect(r.stdout).not.toMatch(/sshd_config|waggle-init/);
    expect(r.stdout).toMatch(/^root:x:0:0:root:\/root:\/bin\/sh$/m);
    expect(r.stdout).toMatch(/^drwxrwxrwt .* \/tmp$/m);
    expect(r.stdout).toMatch(/^drwxr-xr-x .* root +root .* \/$/m);
    // A rename within the root filesystem (no copy fallback): refused, and the helpers stay.
    expect(r.stdout).toMatch(/mv: can't rename '\/.waggle': Permission denied/);
    expect(r.stdout).toMatch(/^\/.waggle\/bin\/setpriv$/m);
    // No supplementary groups (not the image's uid-1000 user's disk group), and no setuid program
    // can raise the sandbox's privileges.
    expect(r.stdout).toMatch(/^Groups:\s*$/m);
    expect(r.stdout).toMatch(/^NoNewPrivs:\s*1$/m);
    expect(r.stdout.trim().endsWith('1000')).toBe(true);
  });

  it('installs system packages with the image’s own manager: apk where there is no apt-get', {
    timeout: 120_000,
  }, async () => {
    await agent.createVM(spec('oci-apk', `${registry.host}/tenant/alpine-like:1`));
    const r = await agent.installPackages('oci-apk', ['jq', 'py3-pip']);
    expect(r.manager).toBe('apk');
    expect(r.stdout).toBe('apk add --no-cache jq py3-pip (uid 0)\n');
    await expect(agent.installPackages('oci-apk', ['jq; reboot'])).rejects.toThrow(/invalid apk package/);
    // An image with neither says so instead of running a manager that is not there.
    await expect(agent.installPackages('oci-busybox', ['jq'])).rejects.toThrow(
      /has no system package manager Waggle knows \(apt-get, apk\)/,
    );
    await agent.destroyVM('oci-apk');
  });

  it('refuses images it cannot run before any VM exists, naming the image', {
    timeout: 120_000,
  }, async () => {
    const reason = (p: Promise<unknown>) =>
      p.then(
        () => 'created',
        (e: unknown) => (e instanceof ImageError ? e.reason : `other: ${e}`),
      );
    // Not allowed: another repository of the same registry.
    expect(await reason(agent.createVM(spec('oci-other', `${registry.host}/other/busybox:1`)))).toBe(
      'not-allowed',
    );
    expect(await reason(agent.createVM(spec('oci-py', `${registry.host}/tenant/busybox:1`, 'python')))).toBe(
      'missing-interpreter',
    );
    expect(await reason(agent.createVM(spec('oci-gone', `${registry.host}/tenant/nope:1`)))).toBe(
      'not-found',
    );
    // A disk smaller than the image's root filesystem would leave the guest no room.
    const small = agent.createVM({ ...spec('oci-small', `${registry.host}/tenant/busybox:1`), diskMiB: 64 });
    await expect(small).rejects.toThrow(
      /^image ".*busybox:1" needs a disk of at least \d+ MiB \(its root filesystem\), more than the 64 MiB asked for/,
    );
    expect(await reason(small)).toBe('too-large');
    expect(vms.list().map((v) => v.vmId)).toEqual(expect.arrayContaining(['oci-busybox']));
    for (const refused of ['oci-other', 'oci-py', 'oci-gone', 'oci-small'])
      expect(vms.list().map((v) => v.vmId)).not.toContain(refused);
  });

  it('runs a python image with pandas preinstalled: the first import needs no install and no network', {
    timeout: 300_000,
  }, async () => {
    const vm = await agent.createVM(spec('oci-pandas', `${registry.host}/tenant/data-science:1`, 'python'));
    expect(vm.image?.interpreter).toBe('/usr/bin/python3');
    const r = await agent.exec({
      vmId: 'oci-pandas',
      language: 'python',
      code: 'import pandas as pd\nprint(pd.DataFrame({"a": [1, 2, 3]}).a.sum(), pd.__version__)',
      timeoutMs: 120_000,
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^6 \d+\.\d+/);
    await agent.destroyVM('oci-pandas');
  });

  it('keeps warm VMs of an image pool and binds one to a create of that image', {
    timeout: 180_000,
  }, async () => {
    const image = `${registry.host}/tenant/busybox:1`;
    const { vmId: _, image: __, ...template } = spec('', image);
    const declare = (replicas: number) =>
      agent.setWarmPools([{ name: 'tenant/bb', template: templateOf(template), replicas, image }]);
    const first = await declare(1);
    // The image is resolved first (cached here after the earlier tests), then the pool fills.
    expect(first.find((p) => p.name === 'tenant/bb')).toBeDefined();
    await waitFor(
      async () => agent.pools.status().find((p) => p.name === 'tenant/bb'),
      (p) => p?.ready === 1,
      'a ready warm VM of the image pool',
      { timeoutMs: 150_000, intervalMs: 250 },
    );
    const vm = await agent.createVM(spec('oci-warm', image), { pool: 'tenant/bb' });
    expect(vm.origin).toBe('warm');
    expect(vm.image?.digest).toBe(vms.get('oci-busybox').image?.digest);
    const r = await agent.exec({
      vmId: 'oci-warm',
      code: 'id -u; hello-tool warm',
      language: 'shell',
    });
    expect(r.stdout).toBe('1000\ntool says warm\n'); // the image's PATH, as in a cold create
    await declare(0);
    await agent.destroyVM('oci-warm');
    await waitFor(
      async () => vms.list().filter((v) => v.vmId === undefined).length,
      (n) => n === 0,
      'the pool drained',
      { timeoutMs: 60_000 },
    );
  });

  it('repeats a create without a registry round trip, and keeps an image in use out of collection', {
    timeout: 120_000,
  }, async () => {
    const first = vms.get('oci-busybox');
    await registry.stop(); // a repeat must not need the registry
    const again = await agent.createVM(spec('oci-busybox', `${registry.host}/tenant/busybox:1`));
    expect(again.instanceId).toBe(first.instanceId);
    // The operator's pull before a retried create, named for the VM: answered from the VM.
    const pulled = await agent.pullImage(`${registry.host}/tenant/busybox:1`, 'shell', {
      vmId: 'oci-busybox',
    });
    expect(pulled).toMatchObject({ digest: first.image?.digest, cached: true });
    const rootfs = first.image?.rootfs as string;
    const tight = new OciImageStore({
      cacheDir: join(work, 'cache'),
      maxCacheBytes: 1,
      maxImageBytes: 256 << 20,
      allowList: [],
      insecureRegistries: [],
      toolbox: await ensureGuestToolbox(),
      inUse: () => vms.list().flatMap((vm) => (vm.image ? [vm.image.rootfs] : [])),
      leaseMs: 0,
      log: testLog,
    });
    await tight.collect();
    expect((await stat(rootfs)).isFile()).toBe(true);
    await agent.destroyVM('oci-busybox');
    await agent.destroyVM('oci-hostile');
    expect((await tight.collect()).length).toBe(2);
    await expect(stat(rootfs)).rejects.toThrow(/ENOENT/);
  });
});
