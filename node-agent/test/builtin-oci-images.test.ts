import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type AgentProcess,
  freePorts,
  guestImageLayout,
  killStrayVMs,
  type LocalRegistry,
  push,
  startAgentProcess,
  startRegistry,
} from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeAgentClient, Egress, Runtime } from '../src/client.ts';

// Real parts: the node-agent as its own process, the CNCF distribution registry on loopback
// holding the shell runtime's built-in image as build.sh made it, real QEMU and SSH. The agent's
// build script refuses to build root filesystems: the runtime must come from the registry.
const run = promisify(execFile);
const AGENT_MAIN = join(import.meta.dirname, '..', 'src', 'main.ts');
const BUILD = join(import.meta.dirname, '..', '..', 'images', 'guest', 'build.sh');
let work = '';
let registry: LocalRegistry;
let agent: AgentProcess | undefined;
let noMirrorBuild = '';

const agentEnv = (image: string) => ({
  WAGGLE_STATE_DIR: join(work, 'state'),
  WAGGLE_IMAGE_CACHE_DIR: join(work, 'oci'),
  WAGGLE_GUEST_RUNTIMES: 'shell',
  WAGGLE_IMAGE_SHELL: image,
  WAGGLE_IMAGE_INSECURE_REGISTRIES: registry.host,
  WAGGLE_GUEST_BUILD_SCRIPT: noMirrorBuild,
  WAGGLE_VM_NETWORK_CIDR: '10.253.41.0/24',
  WAGGLE_REGISTER: 'false',
});

/** Creates a shell VM on the agent and returns what `code` prints in it. */
async function shellVM(client: ReturnType<typeof createNodeAgentClient>, vmId: string, code: string) {
  await client.createVM({
    spec: { vmId, runtime: Runtime.SHELL, cpus: 1, memoryMib: 256, diskMib: 1024, egress: Egress.NONE },
  });
  let out = '';
  for await (const m of client.exec({ vmId, code, language: 'shell', timeoutMs: 30_000 })) {
    if (m.event.case === 'result') out = m.event.value.stdout;
  }
  return out;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'waggle-builtin-oci-'));
  registry = await startRegistry();
  await push(await guestImageLayout('shell'), `${registry.host}/waggle/guest-shell:1`);
  noMirrorBuild = join(work, 'build-no-rootfs.sh');
  await writeFile(
    noMirrorBuild,
    `#!/usr/bin/env bash\ncase "$1" in rootfs) echo "refused: rootfs $2 must come from the registry" >&2; exit 3;; esac\nexec bash ${BUILD} "$@"\n`,
  );
  await chmod(noMirrorBuild, 0o755);
}, 300_000);

afterAll(async () => {
  await agent?.kill('SIGTERM');
  if (work) await killStrayVMs(join(work, 'state'));
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('built-in runtime images from a registry (WAGGLE_IMAGE_<RUNTIME>=<reference>)', () => {
  it('pulls the runtime image at start instead of building it, and runs code in it', {
    timeout: 240_000,
  }, async () => {
    const [apiPort, opsPort] = (await freePorts(2)) as [number, number];
    agent = await startAgentProcess({
      apiPort,
      opsPort,
      env: agentEnv(`${registry.host}/waggle/guest-shell:1`),
      readyTimeoutMs: 180_000,
    });
    const client = createNodeAgentClient(agent.apiUrl);
    expect((await client.getNodeInfo({})).runtimes).toEqual(['shell']);
    const out = await shellVM(
      client,
      'builtin-oci',
      'echo "$(id -un) $(cat /etc/debian_version)"; test -x /sbin/waggle-init && echo own-init',
    );
    // The built-in Debian image with its own init (no toolbox added): as if built on the node.
    expect(out).toMatch(/^sandbox 13\.\d+\nown-init\n$/); // Debian 13 (trixie)
    expect(
      (await readdir(`${join(work, 'oci')}-builtin`)).filter((n) => /^[a-f0-9]{64}$/.test(n)),
    ).toHaveLength(1);
    await client.destroyVM({ vmId: 'builtin-oci' });
    await agent.kill('SIGTERM');
    agent = undefined;
  });

  it('refuses to start, naming the setting and the image, when the image cannot be pulled', {
    timeout: 120_000,
  }, async () => {
    const [apiPort, opsPort] = (await freePorts(2)) as [number, number];
    const missing = `${registry.host}/waggle/guest-shell:missing`;
    const result = await run(process.execPath, [AGENT_MAIN], {
      env: {
        ...process.env,
        ...agentEnv(missing),
        WAGGLE_AGENT_LISTEN: `127.0.0.1:${apiPort}`,
        WAGGLE_AGENT_OPS_LISTEN: `127.0.0.1:${opsPort}`,
      },
      timeout: 100_000,
    }).then(
      () => ({ code: 0, output: '' }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({
        code: err.code ?? -1,
        output: `${err.stdout ?? ''}${err.stderr ?? ''}`,
      }),
    );
    expect(result.code).not.toBe(0);
    expect(result.output).toContain(`WAGGLE_IMAGE_SHELL=${missing}`);
    expect(result.output).toMatch(/was not found/);
    expect(result.output).not.toContain('refused: rootfs'); // it never fell back to a mirror build
  });

  it('starts with the last pulled copy when the registry is down, and runs code in it', {
    timeout: 240_000,
  }, async () => {
    const image = `${registry.host}/waggle/guest-shell:1`;
    await registry.stop(); // the first test pulled it into this node's cache
    const [apiPort, opsPort] = (await freePorts(2)) as [number, number];
    agent = await startAgentProcess({ apiPort, opsPort, env: agentEnv(image), readyTimeoutMs: 180_000 });
    const client = createNodeAgentClient(agent.apiUrl);
    expect(await shellVM(client, 'offline', 'id -un')).toBe('sandbox\n');
    await client.destroyVM({ vmId: 'offline' });
  });
});
