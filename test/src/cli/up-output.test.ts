import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatUpOutput, parseUpOutput, TOKEN_ENV, type UpOutput, writeTokenFile } from './up-output.ts';

const run = promisify(execFile);
// Shaped like a ServiceAccount token, with characters a shell would treat specially.
const TOKEN = 'eyJhbGciOiJFUzI1NiIs.eyJhdWQiOlsid2FnZ2xlIl19.c2lnbmF0dXJl-_$x\'y"z';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'waggle-up-output-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function output(over: Partial<UpOutput> = {}): UpOutput {
  return {
    seconds: 42.4,
    mcpUrl: 'http://127.0.0.1:8080/mcp',
    tokenFile: join(dir, 'agent token'), // a space: the printed commands must quote it
    serviceAccount: { namespace: 'waggle-demo', name: 'agent' },
    tokenValidity: '24 h',
    newTokenCommand: 'kubectl create token agent -n waggle-demo --audience waggle --duration 24h',
    watchCommand: 'kubectl get wenv -A',
    ...over,
  };
}

/** The lines of one printed step: from the line starting with `title` to the next blank line. */
function section(text: string, title: string): string {
  const start = text.indexOf(`\n${title}`);
  if (start < 0) throw new Error(`no section "${title}" in:\n${text}`);
  const body = text.slice(start + 1);
  const end = body.indexOf('\n\n');
  return (end < 0 ? body : body.slice(0, end)).split('\n').slice(1).join('\n');
}

/** Runs the printed `export` line and then `commands` in bash, as a user pasting them would. */
async function paste(text: string, commands: string, env: Record<string, string> = {}) {
  const exportLine = section(text, 'The commands and configs below read the token');
  return run('bash', ['-euc', `${exportLine}\n${commands}`], { env: { ...process.env, ...env } });
}

describe('pnpm waggle up output', () => {
  it('never contains the token; names the file and the variable', async () => {
    const o = output();
    await writeTokenFile(o.tokenFile, TOKEN);
    const text = formatUpOutput(o);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain('eyJhbGciOiJFUzI1NiIs');
    expect(text).toContain(o.tokenFile);
    expect(text).toContain(`$${TOKEN_ENV}`);
    expect(parseUpOutput(text)).toEqual({ mcpUrl: o.mcpUrl, tokenFile: o.tokenFile });
  });

  it('the client configs reference the token and parse as JSON', () => {
    const text = formatUpOutput(output());
    const claude = JSON.parse(section(text, 'Claude Code (.mcp.json')) as {
      mcpServers: { waggle: { type: string; url: string; headers: Record<string, string> } };
    };
    expect(claude.mcpServers.waggle).toEqual({
      type: 'http',
      url: 'http://127.0.0.1:8080/mcp',
      headers: { Authorization: `Bearer \${${TOKEN_ENV}}` },
    });
    const vscode = JSON.parse(section(text, 'VS Code (.vscode/mcp.json')) as {
      inputs: { id: string; password: boolean }[];
      servers: { waggle: { headers: Record<string, string> } };
    };
    expect(vscode.inputs).toMatchObject([{ id: 'waggle-token', password: true }]);
    expect(vscode.servers.waggle.headers).toEqual({ Authorization: `Bearer \${input:waggle-token}` });
  });

  it('writes the token file for its owner only, also over an existing file', async () => {
    const path = join(dir, 'nested', 'token');
    await writeTokenFile(path, 'old');
    await chmod(path, 0o644);
    await writeTokenFile(path, TOKEN);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await readFile(path, 'utf8')).trim()).toBe(TOKEN);
  });

  it('the printed curl check sends the token from the file (a local server checks it)', async () => {
    let seen: { headers: IncomingHttpHeaders; body: string } | undefined;
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        seen = { headers: req.headers, body };
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end('{"jsonrpc":"2.0","id":1,"result":{}}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const o = output({ mcpUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp` });
      await writeTokenFile(o.tokenFile, TOKEN);
      const text = formatUpOutput(o);
      const { stdout } = await paste(text, section(text, 'Check the endpoint'));
      expect(stdout).toContain('"result"');
      expect(seen?.headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(seen?.headers.accept).toBe('application/json, text/event-stream');
      expect(JSON.parse(seen?.body ?? '')).toMatchObject({
        method: 'initialize',
        params: { protocolVersion: '2025-11-25' },
      });
    } finally {
      server.close();
    }
  });

  it('the printed MCP Inspector command passes the URL, transport, header and method', async () => {
    const o = output();
    await writeTokenFile(o.tokenFile, TOKEN);
    const text = formatUpOutput(o);
    // A stand-in npx on PATH prints the arguments it got: nothing is downloaded.
    const bin = join(dir, 'bin');
    await run('mkdir', ['-p', bin]);
    await writeFile(
      join(bin, 'npx'),
      `#!${process.execPath}\nconsole.log(JSON.stringify(process.argv.slice(2)))\n`,
      {
        mode: 0o755,
      },
    );
    const { stdout } = await paste(text, section(text, 'List the tools with the MCP Inspector'), {
      PATH: `${bin}:${process.env.PATH}`,
    });
    expect(JSON.parse(stdout)).toEqual([
      '@modelcontextprotocol/inspector',
      '--cli',
      o.mcpUrl,
      '--transport',
      'http',
      '--header',
      `Authorization: Bearer ${TOKEN}`,
      '--method',
      'tools/list',
    ]);
  });
});
