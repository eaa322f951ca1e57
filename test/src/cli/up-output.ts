// What `pnpm waggle up` prints when it is done: the MCP URL, where the token is, and client
// configurations that reference the token (an environment variable, a prompt) instead of
// containing it — people commit .mcp.json and .vscode/mcp.json.
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** The environment variable every printed command and config reads the token from. */
export const TOKEN_ENV = 'WAGGLE_TOKEN';

/** The id of the VS Code input (a password prompt) its config reads the token from. */
export const VSCODE_INPUT = 'waggle-token';

export interface UpOutput {
  seconds: number;
  mcpUrl: string;
  /** The 0600 file holding the token (writeTokenFile). */
  tokenFile: string;
  serviceAccount: { namespace: string; name: string };
  tokenValidity: string;
  /** A shell command that mints a new token (kubectl create token …). */
  newTokenCommand: string;
  /** A shell command that lists the environments of all namespaces. */
  watchCommand: string;
}

/**
 * Writes the token for its owner only: a new 0600 file beside it, renamed over the old one, so
 * the token is never in a file with a looser mode (an existing file's, or a symlink's target).
 */
export async function writeTokenFile(path: string, token: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await rm(tmp, { force: true });
  await writeFile(tmp, `${token}\n`, { mode: 0o600, flag: 'wx' });
  await chmod(tmp, 0o600); // whatever the umask
  await rename(tmp, path);
}

/** Single-quotes `s` for a POSIX shell. */
const sq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export function formatUpOutput(o: UpOutput): string {
  const bearer = `"Authorization: Bearer $${TOKEN_ENV}"`;
  const initialize = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'curl', version: '1' } },
  });
  const claudeCode = {
    mcpServers: {
      waggle: { type: 'http', url: o.mcpUrl, headers: { Authorization: `Bearer \${${TOKEN_ENV}}` } },
    },
  };
  const vscode = {
    inputs: [
      {
        type: 'promptString',
        id: VSCODE_INPUT,
        description: `Waggle token (the contents of ${o.tokenFile})`,
        password: true,
      },
    ],
    servers: {
      waggle: { type: 'http', url: o.mcpUrl, headers: { Authorization: `Bearer \${input:${VSCODE_INPUT}}` } },
    },
  };
  const sa = `${o.serviceAccount.namespace}/${o.serviceAccount.name}`;
  return `
Waggle is up (${o.seconds.toFixed(0)} s).

MCP URL:     ${o.mcpUrl}
Token file:  ${o.tokenFile}
             (mode 0600; ServiceAccount ${sa}, valid ${o.tokenValidity}; pnpm waggle up again writes a new one, or
              ${o.newTokenCommand})

The commands and configs below read the token from $${TOKEN_ENV}; none of them contains it:
  export ${TOKEN_ENV}="$(cat ${sq(o.tokenFile)})"

Check the endpoint (an MCP initialize; 200 and a JSON-RPC result):
  curl -sS ${o.mcpUrl} -H ${bearer} -H 'Content-Type: application/json' \\
    -H 'Accept: application/json, text/event-stream' -d ${sq(initialize)}

List the tools with the MCP Inspector:
  npx @modelcontextprotocol/inspector --cli ${o.mcpUrl} --transport http \\
    --header ${bearer} --method tools/list

Claude Code (.mcp.json; Claude Code expands \${${TOKEN_ENV}} from the environment it starts in):
${JSON.stringify(claudeCode, null, 2)}

VS Code (.vscode/mcp.json; VS Code asks for the token once and keeps it in its secret storage):
${JSON.stringify(vscode, null, 2)}

Watch environments:
  ${o.watchCommand}

Stop everything: pnpm waggle down`;
}

/** The MCP URL and token file from `pnpm waggle up`'s output (for scripts and the e2e suite). */
export function parseUpOutput(stdout: string): { mcpUrl: string; tokenFile: string } | undefined {
  const mcpUrl = /^MCP URL:\s+(\S+)$/m.exec(stdout)?.[1];
  const tokenFile = /^Token file:\s+(.+?)\s*$/m.exec(stdout)?.[1];
  return mcpUrl && tokenFile ? { mcpUrl, tokenFile } : undefined;
}
