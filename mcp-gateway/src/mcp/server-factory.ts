import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  ErrorCode,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from 'pino';
import type { Caller } from '../auth/caller.ts';
import { UserError } from '../errors.ts';
import { describeInputIssues, errorResult, structuredResult, type ToolDefinition } from './tool.ts';

export const SERVER_INFO = { name: 'waggle', version: '0.1.0' } as const;

const INSTRUCTIONS =
  'Waggle gives you disposable Linux microVMs. create_environment (python, node or shell), then ' +
  'execute code, write_file/read_file/list_files, install_packages; destroy_environment when done. ' +
  'For a dev server, a watcher or a long job, execute with background: true returns a process_id at ' +
  'once; read its output with process_output (since = the previous next_since) and stop it with ' +
  'kill_process. ' +
  'Environments are deleted automatically after their idle timeout.';

export type ToolCallObserver = (
  tool: string,
  outcome: 'ok' | 'user_error' | 'internal_error',
  durationMs: number,
) => void;

/**
 * One MCP server per session, bound to the authenticated caller: every tool call runs as that
 * caller, so nothing a client sends can name another tenant. McpServer lists the tools (JSON
 * Schema from zod, output schemas, annotations); calls are dispatched here so that a user's
 * mistake becomes an `isError` result and only internal faults become JSON-RPC errors (the SDK
 * would otherwise fold both into `isError`).
 */
export function createMcpServer(
  caller: Caller,
  tools: ToolDefinition[],
  log: Logger,
  observe?: ToolCallObserver,
): McpServer {
  const server = new McpServer(SERVER_INFO, {
    capabilities: { tools: { listChanged: false }, logging: {} },
    instructions: INSTRUCTIONS,
  });
  const byName = new Map(tools.map((t) => [t.name, t]));
  for (const t of tools) {
    server.registerTool(
      t.name,
      {
        title: t.title,
        description: t.description,
        inputSchema: t.input,
        outputSchema: t.output,
        annotations: { title: t.title, ...t.annotations },
      },
      () => {
        throw new Error('dispatched by createMcpServer');
      },
    );
  }

  server.server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const tool = byName.get(request.params.name);
    if (!tool) {
      throw new McpError(
        ErrorCode.InvalidParams,
        `unknown tool "${request.params.name}"; the tools are ${[...byName.keys()].join(', ')}`,
      );
    }
    const started = performance.now();
    const reqLog = log.child({ tool: tool.name, requestId: String(extra.requestId) });
    const done = (outcome: 'ok' | 'user_error' | 'internal_error') =>
      observe?.(tool.name, outcome, performance.now() - started);
    const parsed = tool.input.safeParse(request.params.arguments ?? {});
    if (!parsed.success) {
      done('user_error');
      return errorResult(describeInputIssues(tool.name, parsed.error), 'invalid_argument');
    }
    const progressToken = request.params._meta?.progressToken;
    const progress = (value: number, message: string, total?: number) => {
      if (progressToken === undefined || extra.signal.aborted) return;
      void extra
        .sendNotification({
          method: 'notifications/progress',
          params: { progressToken, progress: value, message, ...(total !== undefined ? { total } : {}) },
        })
        .catch(() => undefined);
    };
    try {
      const out = await tool.run(parsed.data, { caller, signal: extra.signal, log: reqLog, progress });
      done('ok');
      return structuredResult(out as Record<string, unknown>);
    } catch (err) {
      if (err instanceof UserError) {
        reqLog.info({ code: err.code, err: err.message }, 'tool call refused');
        done('user_error');
        return errorResult(err.message, err.code);
      }
      const incident = randomUUID();
      reqLog.error(
        { err, incident, envId: (parsed.data as { environment_id?: string }).environment_id },
        'tool call failed',
      );
      done('internal_error');
      throw new McpError(
        ErrorCode.InternalError,
        `internal error in ${tool.name} (incident ${incident}); retry, and report the incident id if it persists`,
      );
    }
  });
  return server;
}
