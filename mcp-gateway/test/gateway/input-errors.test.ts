// Calls that cannot succeed: invalid input, file errors from the node, an unreachable node —
// each an isError result that names the problem, never a protocol error.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { type FakeNodeAgent, startFakeNodeAgent } from '@waggle/node-agent/testing';
import { call, errorText, ok, registerFakeNode } from '@waggle/test';
import { beforeAll, describe, expect, it } from 'vitest';
import { custom, nsA, suffix, untilGone, useGatewayStack } from './fixture.ts';

const stack = useGatewayStack();
let a: Client;
beforeAll(() => {
  ({ a } = stack);
});

describe('mcp-gateway answers to calls that cannot succeed (real apiserver and operator, fake node-agent)', () => {
  it('answers every invalid input with an isError result that names the problem', async () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      [
        'create_environment',
        {},
        /give a runtime \(python, node or shell\) or a template \(list_templates shows them\)/,
      ],
      ['create_environment', { runtime: 'ruby' }, /runtime must be one of python, node, shell/],
      ['create_environment', { runtime: 'python', timeout_minutes: 0 }, /timeout_minutes must be at least 1/],
      ['create_environment', { runtime: 'python', timeout_minutes: 1.5 }, /whole number of minutes/],
      ['create_environment', { runtime: 'python', name: 'x'.repeat(300) }, /name must be at most 253/],
      ['create_environment', { runtime: 'python', network: 'all' }, /network must be "none" or "internet"/],
      [
        'create_environment',
        { runtime: 'python', allow_domains: ['pypi.org', 'https://x/'] },
        /allow_domains entry must be a domain name such as "pypi.org"/,
      ],
      [
        'create_environment',
        { runtime: 'python', allow_domains: [] },
        /allow_domains must list at least one/,
      ],
      [
        'create_environment',
        { runtime: 'python', network: 'none', allow_domains: ['pypi.org'] },
        /allow_domains needs network "internet"/,
      ],
      ['destroy_environment', {}, /environment_id is required/],
      ['destroy_environment', { environment_id: 'Bad ID!' }, /environment_id has characters no id has/],
      ['destroy_environment', { environment_id: 'env-missing' }, /environment "env-missing" does not exist/],
      ['execute', { environment_id: 'env-missing' }, /code is required/],
      ['execute', { environment_id: 'env-missing', code: '' }, /code is empty/],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', language: 'cobol' },
        /language "cobol" is not supported/,
      ],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', language: 'constructor' },
        /language "constructor" is not supported/,
      ],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', timeout_seconds: -1 },
        /timeout_seconds must be more than 0/,
      ],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', timeout_seconds: 9999 },
        /timeout_seconds must be at most 300/,
      ],
      ['execute', { environment_id: 'env-missing', code: 'x' }, /does not exist.*list_environments/],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', background: true, timeout_seconds: 5 },
        /timeout_seconds: does not apply with background: true/,
      ],
      ['execute', { environment_id: 'env-missing', code: 'x', background: 'yes' }, /background must be true/],
      ['process_output', { environment_id: 'env-missing' }, /process_id is required/],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: '1234' },
        /process_id must be one that execute with background: true returned/,
      ],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: 'proc-0123456789abcdef', since: -1 },
        /since must be 0 or more/,
      ],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: 'proc-0123456789abcdef', since: 1.5 },
        /since must be a whole number/,
      ],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: 'proc-0123456789abcdef', wait_seconds: 31 },
        /wait_seconds must be at most 30/,
      ],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: 'proc-0123456789abcdef' },
        /environment "env-missing" does not exist/,
      ],
      ['kill_process', { environment_id: 'env-missing', process_id: 'x' }, /process_id must be one that/],
      ['install_packages', { environment_id: 'env-missing', packages: [] }, /packages is empty/],
      [
        'install_packages',
        { environment_id: 'env-missing', packages: 42 },
        /packages must be package names: a list/,
      ],
      ['install_packages', { environment_id: 'env-missing', packages: '  ' }, /packages is empty/],
      ['install_packages', { environment_id: 'env-missing', packages: [''] }, /a package name is empty/],
      ['write_file', { environment_id: 'env-missing', path: 'a' }, /content is required/],
      ['write_file', { environment_id: 'env-missing', path: '', content: '' }, /path is empty/],
      [
        'write_file',
        { environment_id: 'env-missing', path: 'a', content: '', encoding: 'hex' },
        /encoding must be/,
      ],
      ['read_file', { environment_id: 'env-missing' }, /path is required/],
      ['read_file', { environment_id: 'env-missing', path: 'a\u0000b' }, /NUL byte/],
      [
        'read_file',
        { environment_id: 'env-missing', path: 'a', encoding: 'latin1' },
        /encoding must be "auto"/,
      ],
      ['list_files', { environment_id: 42 }, /environment_id/],
      ['install_packages', { packages: ['six'] }, /environment_id is required/],
      ['list_files', { environment_id: 'env-missing', path: 'x'.repeat(5000) }, /longer than 4096/],
    ];
    for (const [tool, args, expected] of cases) {
      const r = await call(a, tool, args);
      expect(r.isError, `${tool} ${JSON.stringify(args).slice(0, 80)}`).toBe(true);
      expect(errorText(r), `${tool} ${JSON.stringify(args).slice(0, 80)}`).toMatch(expected);
    }
  });

  it('reports file errors from the node and invalid base64 clearly', { timeout: 60_000 }, async () => {
    const { environment_id: id } = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'python',
    });
    const missing = await call(a, 'read_file', { environment_id: id, path: 'nope.txt' });
    expect(missing.isError).toBe(true);
    expect(errorText(missing)).toMatch(/nope\.txt does not exist.*list_files/);
    const bad64 = await call(a, 'write_file', {
      environment_id: id,
      path: 'b',
      content: '@@@',
      encoding: 'base64',
    });
    expect(errorText(bad64)).toMatch(/not valid base64/);
    await ok(a, 'destroy_environment', { environment_id: id });
  });

  it('answers calls to an environment whose node stopped answering with isError, not a protocol error', {
    timeout: 120_000,
  }, async () => {
    // A second node, the only one with the shell runtime, whose agent then goes away while its
    // WaggleNode keeps heartbeating (a hung or partitioned agent).
    const shellAgent = await startFakeNodeAgent({ createDelayMs: 50 });
    const shellNode = `gw-shell-${suffix}`;
    let registration = await registerFakeNode(custom, {
      name: shellNode,
      endpoint: shellAgent.url,
      vms: 2,
      runtimes: ['shell'],
    });
    let replacement: FakeNodeAgent | undefined;
    try {
      const { environment_id: id } = await ok<{ environment_id: string }>(a, 'create_environment', {
        runtime: 'shell',
      });
      await shellAgent.stop();
      const calls: Array<[string, Record<string, unknown>]> = [
        ['execute', { environment_id: id, code: 'true' }],
        ['write_file', { environment_id: id, path: 'a.txt', content: 'x' }],
        ['read_file', { environment_id: id, path: 'a.txt' }],
        ['list_files', { environment_id: id }],
      ];
      for (const [tool, args] of calls) {
        const r = await call(a, tool, args);
        expect(r.isError, tool).toBe(true);
        expect(errorText(r), tool).toMatch(new RegExp(`environment "${id}" is unreachable.*did not answer`));
      }
      // Bring the node back (a new agent) so the finalizer can finish quickly.
      replacement = await startFakeNodeAgent();
      await registration.remove();
      registration = await registerFakeNode(custom, {
        name: shellNode,
        endpoint: replacement.url,
        vms: 2,
        runtimes: ['shell'],
      });
      await ok(a, 'destroy_environment', { environment_id: id });
      // A destroy the operator started on the old endpoint (its node's new registration not yet
      // seen) waits out the 15 s agent call deadline and its requeue before the retry reaches the
      // new agent: slow under a loaded CI, not a failure of what this test checks.
      await untilGone(nsA, id, 60_000);
    } finally {
      await registration.remove();
      await replacement?.stop();
    }
  });
});
