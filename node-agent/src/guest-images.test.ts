import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveGuestImages, resolveGuestToolbox } from './guest-images.ts';

// A stand-in for images/guest/build.sh offline: it prints the cached artifact's directory last
// and warns that the package versions resolved last time keyed it.
let dir: string;
let script: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'waggle-guest-images-'));
  script = join(dir, 'build.sh');
  await writeFile(
    script,
    [
      'echo "build.sh: warning: cannot resolve package versions from the mirror; using those resolved at T" >&2',
      'echo "some builder chatter" >&2',
      'echo "noise on stdout"',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell source
      'echo "/cache/images/$1${2:+-$2}-0123456789ab"',
      '',
    ].join('\n'),
  );
  await chmod(script, 0o755);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('guest images from build.sh', () => {
  it('uses the directory build.sh prints last and passes on its warnings, not its chatter', async () => {
    const logs: string[] = [];
    const warnings: string[] = [];
    const images = await resolveGuestImages({
      runtimes: ['python'],
      overrides: {},
      buildScript: script,
      log: (m) => logs.push(m),
      warn: (m) => warnings.push(m),
    });
    expect(images).toEqual({
      kernel: '/cache/images/kernel-0123456789ab/vmlinuz',
      initrd: '/cache/images/kernel-0123456789ab/initramfs.img',
      rootfs: { python: '/cache/images/rootfs-python-0123456789ab/rootfs.ext4' },
    });
    expect(warnings).toHaveLength(2); // kernel, python
    expect(warnings[0]).toMatch(/^build\.sh: warning: cannot resolve package versions/);
    expect(logs.join('\n')).not.toMatch(/chatter|warning/);

    const toolWarnings: string[] = [];
    const toolbox = await resolveGuestToolbox({
      buildScript: script,
      log: () => undefined,
      warn: (m) => toolWarnings.push(m),
    });
    expect(toolbox).toEqual({ dir: '/cache/images/toolbox-0123456789ab/toolbox', id: '0123456789ab' });
    expect(toolWarnings).toHaveLength(1);
  });
});
