// Whether a custom guest root filesystem meets the guest contract (images/guest/README.md,
// "Custom images"), read with debugfs without mounting it.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Check } from './check.ts';

const run = promisify(execFile);

/** Paths a custom image must contain, common to all runtimes and per runtime. */
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

async function debugfs(image: string, request: string): Promise<string> {
  const { stdout, stderr } = await run('debugfs', ['-R', request, image]).catch(
    (e) => e as { stdout: string; stderr: string },
  );
  return `${stdout}${stderr}`;
}

/** The contract checks of an ext4 image for `runtime`; a failed check says what to change. */
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
