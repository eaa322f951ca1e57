// The tools over Streamable HTTP: their schemas, a whole session, the caller's network choice,
// progress and cancellation.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CALLER_LABEL, LAST_ACTIVITY_ANNOTATION } from '@waggle/crds';
import type { FakeNodeAgent } from '@waggle/node-agent/testing';
import { call, errorText, ok, waitFor } from '@waggle/test';
import { beforeAll, describe, expect, it } from 'vitest';
import { custom, envObject, nsA, suffix, untilGone, useGatewayStack } from './fixture.ts';

const TEMPLATES = { group: 'waggle.dev', version: 'v1alpha1', plural: 'waggletemplates' };
/** A tool call that must fail as a tool error (isError): its text. */
const refused = async (client: Client, name: string, args: Record<string, unknown>) => {
  const r = await call(client, name, args);
  expect(r.isError, JSON.stringify(r.content)).toBe(true);
  return errorText(r);
};

const stack = useGatewayStack();
let agent: FakeNodeAgent;
let a: Client;
beforeAll(() => {
  ({ agent, a } = stack);
});

describe('mcp-gateway tools over Streamable HTTP (real apiserver and operator, fake node-agent)', () => {
  it('lists the tools with input and output schemas and annotations', async () => {
    const { tools } = await a.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([
      'create_environment',
      'destroy_environment',
      'execute',
      'expose_port',
      'extend_environment',
      'install_packages',
      'kill_process',
      'list_environments',
      'list_files',
      'list_templates',
      'process_output',
      'read_file',
      'unexpose_port',
      'write_file',
    ]);
    for (const t of tools) {
      expect(t.outputSchema, t.name).toBeDefined();
      expect(t.annotations, t.name).toBeDefined();
    }
    expect(tools.find((t) => t.name === 'destroy_environment')?.annotations?.destructiveHint).toBe(true);
    expect(tools.find((t) => t.name === 'read_file')?.annotations?.readOnlyHint).toBe(true);
    expect(tools.find((t) => t.name === 'execute')?.inputSchema.required).toEqual(['environment_id', 'code']);
  });

  it('runs a session: create, write, read, list, execute, install, destroy', {
    timeout: 60_000,
  }, async () => {
    const progress: string[] = [];
    const created = (await a.callTool(
      { name: 'create_environment', arguments: { runtime: 'python', name: 'analysis', timeout_minutes: 15 } },
      undefined,
      { onprogress: (p) => progress.push(p.message ?? '') },
    )) as { structuredContent: Record<string, unknown>; content: Array<{ type: string; text: string }> };
    const env = created.structuredContent as {
      environment_id: string;
      status: string;
      timeout: number;
      name: string;
    };
    expect(env).toMatchObject({ status: 'running', timeout: 15, name: 'analysis', runtime: 'python' });
    expect(JSON.parse(created.content[0]?.text ?? '{}')).toEqual(created.structuredContent);
    expect(progress.length).toBeGreaterThan(0);
    const id = env.environment_id;

    const obj = await envObject(nsA, id);
    expect(obj.spec).toMatchObject({
      runtime: 'python',
      displayName: 'analysis',
      idleTimeout: '15m',
      network: { egress: 'all' }, // WAGGLE_DEFAULT_NETWORK: internet
    });
    expect(obj.metadata.labels?.[CALLER_LABEL]).toMatch(/^[0-9a-f]{16}$/);

    const csv = 'city,temp\nOslo,4\nLima,19\n';
    expect(await ok(a, 'write_file', { environment_id: id, path: 'data.csv', content: csv })).toEqual({
      status: 'written',
      path: 'data.csv',
      bytes_written: csv.length,
    });
    expect(await ok(a, 'read_file', { environment_id: id, path: 'data.csv' })).toMatchObject({
      content: csv,
      encoding: 'utf8',
      size: csv.length,
    });
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255]);
    await ok(a, 'write_file', {
      environment_id: id,
      path: 'x.png',
      content: png.toString('base64'),
      encoding: 'base64',
    });
    const back = await ok<{ content: string; encoding: string }>(a, 'read_file', {
      environment_id: id,
      path: 'x.png',
    });
    expect(back.encoding).toBe('base64');
    expect(Buffer.from(back.content, 'base64')).toEqual(png);
    const listing = await ok<{ files: Array<{ name: string; is_dir: boolean }>; count: number }>(
      a,
      'list_files',
      {
        environment_id: id,
      },
    );
    expect(listing.files.map((f) => f.name).sort()).toEqual(['data.csv', 'x.png']);
    expect(listing.count).toBe(2);

    const exec = await ok(a, 'execute', { environment_id: id, code: 'print("hi")', language: 'python3' });
    expect(exec).toMatchObject({ stdout: 'print("hi")', exit_code: 0, timed_out: false });
    expect(agent.execCalls.at(-1)).toEqual({
      vmId: obj.metadata.uid,
      language: 'python',
      code: 'print("hi")',
    });
    expect(await ok(a, 'install_packages', { environment_id: id, packages: ['six'] })).toMatchObject({
      manager: 'pip',
      exit_code: 0,
    });
    // The original Waggle's shape: one space-separated string, split into package names.
    expect(
      await ok(a, 'install_packages', { environment_id: id, packages: 'six  tomli==2.0.1' }),
    ).toMatchObject({
      manager: 'pip',
      stdout: 'installed six tomli==2.0.1',
    });
    // Activity is recorded on the object (throttled), for idle expiry.
    await waitFor(
      () => envObject(nsA, id),
      (e) => Boolean(e.metadata.annotations?.[LAST_ACTIVITY_ANNOTATION]),
      'activity annotation',
      { timeoutMs: 10_000 },
    );

    const listed = await ok<{ environments: Array<{ environment_id: string }>; count: number }>(
      a,
      'list_environments',
      {},
    );
    expect(listed.environments.map((e) => e.environment_id)).toContain(id);
    expect(await ok(a, 'destroy_environment', { environment_id: id })).toMatchObject({ status: 'destroyed' });
    await untilGone(nsA, id);
    expect(agent.vms.has(obj.metadata.uid as string)).toBe(false);
  });

  it("passes the caller's network choice into the spec: none, or the internet limited to domains", {
    timeout: 60_000,
  }, async () => {
    const offline = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'python',
      network: 'none',
    });
    expect((await envObject(nsA, offline.environment_id)).spec.network).toEqual({ egress: 'none' });
    const limited = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'python',
      allow_domains: ['PyPI.org', '*.pythonhosted.org'],
    });
    expect((await envObject(nsA, limited.environment_id)).spec.network).toEqual({
      egress: 'all',
      allowDomains: ['pypi.org', '*.pythonhosted.org'],
    });
    await ok(a, 'destroy_environment', { environment_id: offline.environment_id });
    await ok(a, 'destroy_environment', { environment_id: limited.environment_id });
  });

  it("lists the cluster's templates and creates from one: its runtime, image, resources and network", {
    timeout: 60_000,
  }, async () => {
    const tpl = `ds-${suffix}`;
    await custom.createClusterCustomObject({
      ...TEMPLATES,
      body: {
        apiVersion: 'waggle.dev/v1alpha1',
        kind: 'WaggleTemplate',
        metadata: { name: tpl },
        spec: {
          description: 'python with pandas preinstalled',
          runtime: 'python',
          image: 'registry.example.com/team/data-science:1',
          resources: { cpus: 2, memoryMiB: 2048, diskMiB: 4096 },
          network: { egress: 'none' },
          idleTimeout: '45m',
        },
      },
    });
    try {
      const listed = (await ok(a, 'list_templates', {})) as { templates: Array<Record<string, unknown>> };
      expect(listed.templates.find((t) => t.name === tpl)).toEqual({
        name: tpl,
        description: 'python with pandas preinstalled',
        runtime: 'python',
        image: 'registry.example.com/team/data-science:1',
        cpus: 2,
        memory_mb: 2048,
        disk_mb: 4096,
        network: 'none',
        idle_timeout: '45m',
        image_ready: expect.any(Boolean),
      });
      // The operator pre-pulls the template's image on the node (the fake agent takes 600 ms).
      const ready = await waitFor(
        async () =>
          (
            (await ok(a, 'list_templates', {})) as { templates: Array<Record<string, unknown>> }
          ).templates.find((t) => t.name === tpl),
        (t) => t?.image_ready === true,
        'the template image_ready',
        { timeoutMs: 20_000, intervalMs: 200 },
      );
      expect(ready?.image_ready).toBe(true);

      const progress: Array<{ progress: number; message: string }> = [];
      const created = (await a.callTool(
        { name: 'create_environment', arguments: { template: tpl } },
        undefined,
        {
          onprogress: (p) => progress.push({ progress: p.progress, message: p.message ?? '' }),
        },
      )) as unknown as { structuredContent: { environment_id: string } };
      const env = created.structuredContent;
      expect(env).toMatchObject({ status: 'running', runtime: 'python', template: tpl, timeout: 45 });
      // The node's pull is told step by step (the fake agent streams four, 150 ms apart), and
      // progress only ever increases (MCP's rule).
      const said = progress.map((p) => p.message).join('\n');
      expect(said).toMatch(
        /pulling image registry\.example\.com\/team\/data-science:1 on \S+: (downloading|unpacking) the layers/,
      );
      expect(said).toMatch(
        /booting a python microVM on \S+ from image registry\.example\.com\/team\/data-science:1/,
      );
      for (let i = 1; i < progress.length; i++)
        expect(progress[i]?.progress, said).toBeGreaterThan(progress[i - 1]?.progress ?? 0);
      expect(progress.at(-1)?.progress).toBe(4);
      const obj = await envObject(nsA, env.environment_id);
      expect(obj.spec).toMatchObject({
        runtime: 'python',
        template: tpl,
        image: 'registry.example.com/team/data-science:1',
        resources: { cpus: 2, memoryMiB: 2048, diskMiB: 4096 },
        network: { egress: 'none' },
        idleTimeout: '45m',
      });
      expect(agent.createRequests.find((r) => r.vmId === obj.metadata.uid)?.image).toBe(
        'registry.example.com/team/data-science:1',
      );
      expect(agent.pullRequests).toContain('registry.example.com/team/data-science:1');
      await ok(a, 'destroy_environment', { environment_id: env.environment_id });

      expect(await refused(a, 'create_environment', { template: 'no-such-template' })).toMatch(
        /template "no-such-template" does not exist; list_templates shows the templates of this cluster/,
      );
      expect(await refused(a, 'create_environment', { template: tpl, runtime: 'node' })).toMatch(
        new RegExp(`template "${tpl}" is a python template; leave runtime out or use python`),
      );
      expect(await refused(a, 'create_environment', {})).toMatch(/give a runtime .* or a template/);
    } finally {
      await custom.deleteClusterCustomObject({ ...TEMPLATES, name: tpl });
    }
  });

  it('sends progress for long executions and stops the guest process on cancellation', {
    timeout: 60_000,
  }, async () => {
    const { environment_id: id } = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'python',
    });
    const progress: number[] = [];
    const r = await a.callTool(
      { name: 'execute', arguments: { environment_id: id, code: 'sleep:2500' } },
      undefined,
      {
        onprogress: (p) => progress.push(p.progress),
      },
    );
    expect(r.isError).toBeFalsy();
    expect(progress.length).toBeGreaterThanOrEqual(2);
    const controller = new AbortController();
    const pending = a.callTool(
      { name: 'execute', arguments: { environment_id: id, code: 'sleep:30000' } },
      undefined,
      {
        signal: controller.signal,
      },
    );
    setTimeout(() => controller.abort(), 500);
    await expect(pending).rejects.toThrow();
    const vmId = (await envObject(nsA, id)).metadata.uid as string;
    await waitFor(
      async () => agent.cancelledExecs,
      (c) => c.includes(vmId),
      'the node-agent to see the cancellation',
      {
        timeoutMs: 10_000,
      },
    );
    await ok(a, 'destroy_environment', { environment_id: id });
  });
});
