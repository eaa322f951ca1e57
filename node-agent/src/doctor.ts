// `pnpm node-doctor [--image <rootfs.ext4> --runtime <python|node|shell>]`: says what this host has
// and lacks for running Waggle VMs, and whether a custom guest image meets the guest contract.
import { execFile } from 'node:child_process';
import { access, constants, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { RUNTIMES } from '@waggle/crds';
import { detectAccelerator } from './vm/accelerator.ts';

const run = promisify(execFile);
type Check = { ok: boolean; what: string; detail: string };

const HOST_TOOLS: Array<[string, string]> = [
  ['qemu-system-x86_64', 'qemu-system-x86'],
  ['qemu-img', 'qemu-utils'],
  ['mmdebstrap', 'mmdebstrap'],
  ['mkfs.ext4', 'e2fsprogs'],
  ['debugfs', 'e2fsprogs'],
  ['busybox', 'busybox-static'],
  ['depmod', 'kmod'],
  ['cpio', 'cpio'],
  ['ip', 'iproute2'],
  ['nft', 'nftables'],
];

/** Paths a custom image must contain (see images/guest/README.md, "Custom images"). */
export const IMAGE_REQUIREMENTS: Record<string, string[]> = {
  common: [
    '/bin/sh',
    '/usr/bin/find',
    '/usr/bin/head',
    '/usr/bin/env',
    '/usr/bin/setpriv',
    '/usr/bin/pkill',
    '/usr/sbin/sshd',
    '/usr/bin/tini',
    '/sbin/resize2fs',
    '/sbin/waggle-init',
    '/home/sandbox',
  ],
  python: ['/usr/bin/python3'],
  node: ['/usr/bin/node', '/usr/bin/npm'],
  shell: ['/bin/bash', '/usr/bin/apt-get'],
};

async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = join(dir, cmd);
    if (
      await access(p, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return p;
  }
  return undefined;
}

async function debugfs(image: string, request: string): Promise<string> {
  const { stdout, stderr } = await run('debugfs', ['-R', request, image]).catch(
    (e) => e as { stdout: string; stderr: string },
  );
  return `${stdout}${stderr}`;
}

export async function checkImage(image: string, runtime: string): Promise<Check[]> {
  const checks: Check[] = [];
  for (const path of [...(IMAGE_REQUIREMENTS.common ?? []), ...(IMAGE_REQUIREMENTS[runtime] ?? [])]) {
    const out = await debugfs(image, `stat ${path}`);
    const ok = /Inode:\s+\d+/.test(out);
    checks.push({ ok, what: `image has ${path}`, detail: ok ? '' : 'missing' });
  }
  const passwd = await debugfs(image, 'cat /etc/passwd');
  const sandbox = /^sandbox:[^:]*:1000:1000:/m.test(passwd);
  checks.push({
    ok: sandbox,
    what: 'user sandbox is uid/gid 1000',
    detail: sandbox ? '' : 'add: useradd -u 1000 -U -m sandbox',
  });
  const shadow = await debugfs(image, 'cat /etc/shadow');
  const locked = /^sandbox:!/m.test(shadow);
  checks.push({
    ok: !locked,
    what: 'sandbox account is not locked',
    detail: locked ? 'sshd refuses locked accounts without PAM: usermod -p "*" sandbox' : '',
  });
  return checks;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { image: { type: 'string' }, runtime: { type: 'string', default: 'python' } },
  });
  const checks: Check[] = [];
  for (const [tool, pkg] of HOST_TOOLS) {
    const p = await which(tool);
    checks.push({ ok: !!p, what: `host tool ${tool}`, detail: p ?? `missing: apt-get install ${pkg}` });
  }
  const cache = join(
    process.env.WAGGLE_CACHE_DIR || join(process.env.HOME ?? '/root', '.cache', 'waggle'),
    'images',
  );
  const entries = await readdir(cache).catch(() => [] as string[]);
  const built = async (prefix: string) => {
    let newest: { dir: string; mtime: number } | undefined;
    for (const e of entries.filter((x) => x.startsWith(prefix))) {
      const st = await stat(join(cache, e, '.complete')).catch(() => undefined);
      if (st && (!newest || st.mtimeMs > newest.mtime)) newest = { dir: join(cache, e), mtime: st.mtimeMs };
    }
    return newest?.dir;
  };
  const kernel = await built('kernel-');
  checks.push({
    ok: !!kernel,
    what: 'guest kernel + initramfs built',
    detail: kernel ?? 'run: bash images/guest/build.sh kernel',
  });
  for (const rt of RUNTIMES) {
    const d = await built(`rootfs-${rt}-`);
    checks.push({
      ok: !!d,
      what: `${rt} root filesystem built`,
      detail: d ?? `run: bash images/guest/build.sh rootfs ${rt}`,
    });
  }
  if (kernel) {
    const a = await detectAccelerator({
      requested: 'auto',
      kernel: join(kernel, 'vmlinuz'),
      initrd: join(kernel, 'initramfs.img'),
    });
    checks.push({ ok: true, what: `accelerator: ${a.accelerator}`, detail: a.reason });
  }
  if (values.image) checks.push(...(await checkImage(values.image, values.runtime ?? 'python')));
  for (const c of checks)
    process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.what}${c.detail ? ` — ${c.detail}` : ''}\n`);
  const failed = checks.filter((c) => !c.ok).length;
  process.stdout.write(failed ? `\n${failed} problem(s) found\n` : '\nall checks passed\n');
  return failed ? 1 : 0;
}

if (import.meta.main) process.exit(await main());
