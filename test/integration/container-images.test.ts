import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sh } from '../src/cluster/host.ts';
import {
  baseKind,
  buildComponentImage,
  COMPONENTS,
  contextSources,
  ensureBase,
  inputsHash,
  pruneComponentImages,
} from '../src/container-images.ts';

const REPO = join(import.meta.dirname, '..', '..');

/** Runs a command, resolving with its exit code and output (never rejecting on a non-zero exit). */
function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

describe('contextSources: what a Dockerfile takes from the repository root', () => {
  it('lists COPY/ADD sources, not stage copies, flags or destinations', () => {
    const dockerfile = [
      'FROM base AS build',
      'COPY package.json ./',
      'COPY a/package.json \\',
      '     b/package.json ./pkgs/',
      'COPY --chown=1:1 crds/src/ crds/src/',
      'ADD ./images/bundle.ts images/',
      'COPY --from=build /opt/waggle /opt/waggle',
    ].join('\n');
    expect(contextSources(dockerfile)).toEqual([
      'package.json',
      'a/package.json',
      'b/package.json',
      'crds/src',
      'images/bundle.ts',
    ]);
  });

  it('refuses exec-form COPY rather than hashing too little', () => {
    expect(() => contextSources('COPY ["a", "b/"]')).toThrow(/exec-form/);
  });

  it('takes every component source directory the bundle reads', async () => {
    for (const c of COMPONENTS) {
      const sources = contextSources(await readFile(join(REPO, 'images', c, 'Dockerfile'), 'utf8'));
      expect(sources).toEqual(expect.arrayContaining(['crds/src', 'node-agent/src', `${c}/src`]));
    }
  });
});

/**
 * The done-when: each component image builds with plain `podman build -f
 * images/<component>/Dockerfile <root>` from a clean clone of the committed HEAD (only the local
 * base is passed: no registry here), and the image runs: its entry point loads the whole bundle
 * and refuses a bad LOG_LEVEL with the component's configuration error.
 */
describe('component images from a clean clone, with plain podman', () => {
  let clone = '';

  beforeAll(async () => {
    clone = await mkdtemp(join(tmpdir(), 'waggle-clone-'));
    await sh('git', ['clone', '--quiet', '--no-hardlinks', REPO, clone]);
  }, 60_000);

  afterAll(async () => {
    if (clone) await rm(clone, { recursive: true, force: true });
  });

  for (const component of COMPONENTS) {
    it(`builds and runs ${component}`, { timeout: 900_000 }, async () => {
      const base = await ensureBase(baseKind(component));
      // Their own repository (pruned below), so the harness's builds of the working tree stay.
      const tag = `localhost/waggle/${component}-clone:${await inputsHash(component, clone)}`;
      const started = Date.now();
      await buildComponentImage({ component, tag, base, context: clone });
      process.stderr.write(`${component}: built from the clone in ${(Date.now() - started) / 1000} s\n`);

      const bad = await run('podman', ['run', '--rm', '-e', 'LOG_LEVEL=nope', tag]);
      expect(bad.out).toContain(`${component}: invalid ${component} configuration`);
      expect(bad.out).toContain('LOG_LEVEL');
      expect(bad.code).toBe(1);

      // The version it reports (/version, its start line) is its package.json's, copied beside dist/.
      const version = await sh('podman', [
        'run',
        '--rm',
        '--entrypoint',
        'node',
        tag,
        '-p',
        `require('/opt/waggle/${component}/package.json').version`,
      ]);
      const pkg = JSON.parse(await readFile(join(clone, component, 'package.json'), 'utf8')) as {
        version: string;
      };
      expect(version.trim()).toBe(pkg.version);

      const user = (await sh('podman', ['image', 'inspect', '--format', '{{.Config.User}}', tag])).trim();
      expect(user).toBe(component === 'node-agent' ? '' : '65532:65532');
      if (component === 'node-agent') {
        const tools = await run('podman', [
          'run',
          '--rm',
          '--entrypoint',
          'sh',
          tag,
          '-c',
          'command -v qemu-system-x86_64 && test -x "$WAGGLE_GUEST_BUILD_SCRIPT"',
        ]);
        expect(tools.out).toContain('qemu-system-x86_64');
        expect(tools.code).toBe(0);
      }
      // Each commit makes a new tag: keep the newest two, as the harness does.
      await pruneComponentImages(`${component}-clone`, tag);
    });
  }

  // Runs last: it writes into the clone.
  it('tags by what the build copies: ignored junk does not count, a new source file does', async () => {
    const before = await inputsHash('operator', clone);
    await mkdir(join(clone, 'operator', 'src', 'node_modules'), { recursive: true });
    await writeFile(join(clone, 'operator', 'src', 'node_modules', 'x.js'), 'junk');
    await writeFile(join(clone, 'operator', 'src', 'debug.log'), 'junk');
    await writeFile(join(clone, 'mcp-gateway', 'src', 'x.ts'), 'not copied into the operator image');
    expect(await inputsHash('operator', clone)).toBe(before);
    await writeFile(join(clone, 'operator', 'src', 'new.ts'), 'export {};');
    expect(await inputsHash('operator', clone)).not.toBe(before);
  });
});
