import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  ErrorCode,
  type LoggingLevel,
  LoggingLevelSchema,
  McpError,
  SetLevelRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { formatEnvId } from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import type { Caller } from '../auth/caller.ts';
import type { ConcurrencyLimiter } from '../auth/rate-limit.ts';
import { UserError } from '../errors.ts';
import type { CallDrain } from './call-drain.ts';
import {
  describeInputIssues,
  errorResult,
  listedOutputSchema,
  structuredResult,
  type ToolDefinition,
} from './tool.ts';

const LOG_LEVELS = LoggingLevelSchema.options;

const RESTARTING =
  'the Waggle gateway is restarting and takes no new calls; your environments are kept. ' +
  'Retry in a few seconds (reconnect if the session is gone).';
const INTERRUPTED =
  'the Waggle gateway restarted while this call ran and had to stop it; your environment is kept, ' +
  'but the call may not have completed (a command may have been stopped part-way). Check its ' +
  'effects and run it again; reconnect if the session is gone.';

export const SERVER_INFO = { name: 'waggle', version: '0.1.0' } as const;

const INSTRUCTIONS =
  'Waggle gives you disposable Linux microVMs. create_environment (python, node or shell), then ' +
  'execute code, write_file/read_file/list_files, install_packages; destroy_environment when done. ' +
  'For a dev server, a watcher or a long job, execute with background: true returns a process_id at ' +
  'once; read its output with process_output (since = the previous next_since) and stop it with ' +
  'kill_process. ' +
  'Environments are deleted automatically after their idle timeout, or, created with idle_action ' +
  '"suspend", suspended: the next call on one resumes it (its result then has resumed_in_ms).';

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
  /** Tool calls the caller may have running at once, over all its sessions. */
  calls?: ConcurrencyLimiter,
  /** Every call in this gateway, so a shutdown answers each of them (call-drain.ts). */
  drain?: CallDrain,
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
        outputSchema: listedOutputSchema(t),
        annotations: { title: t.title, ...t.annotations },
      },
      () => {
        throw new Error('dispatched by createMcpServer');
      },
    );
  }

  // The client's logging level (logging/setLevel); log messages below it are not sent.
  let clientLevel: LoggingLevel = 'debug';
  server.server.setRequestHandler(SetLevelRequestSchema, (request) => {
    clientLevel = request.params.level;
    return {};
  });

  server.server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const tool = byName.get(request.params.name);
    if (!tool) {
      throw new McpError(
        ErrorCode.InvalidParams,
        `unknown tool "${request.params.name}"; the tools are ${[...byName.keys()].join(', ')}`,
      );
    }
    const started = performance.now();
    let reqLog = log.child({ tool: tool.name, requestId: String(extra.requestId) });
    const entry = drain?.enter(extra.signal);
    if (drain && !entry) {
      observe?.(tool.name, 'user_error', performance.now() - started);
      return errorResult(RESTARTING, 'gateway_restarting');
    }
    const release = calls ? calls.tryAcquire(caller.principal) : () => undefined;
    const done = (outcome: 'ok' | 'user_error' | 'internal_error') => {
      release?.();
      entry?.leave();
      observe?.(tool.name, outcome, performance.now() - started);
    };
    if (!release) {
      done('user_error');
      return errorResult(
        `you already have ${calls?.max} tool calls running at once, the most one caller may have ` +
          '(WAGGLE_MAX_CALLS_PER_CALLER); wait for one to finish or cancel it, then try again. For long ' +
          'jobs, execute with background: true returns at once.',
        'call_limit',
      );
    }
    const parsed = tool.input.safeParse(request.params.arguments ?? {});
    if (!parsed.success) {
      done('user_error');
      return errorResult(describeInputIssues(tool.name, parsed.error), 'invalid_argument');
    }
    // A call about one environment logs its id as the operator and the node-agent do.
    const environmentId = (parsed.data as { environment_id?: unknown }).environment_id;
    if (typeof environmentId === 'string' && environmentId)
      reqLog = reqLog.child({ envId: formatEnvId(caller.namespace, environmentId) });
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
    const requestBaseUrl = baseUrlOf(extra.requestInfo?.headers);
    const notify = (level: LoggingLevel, data: unknown) => {
      if (extra.signal.aborted || LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(clientLevel)) return;
      void extra
        .sendNotification({ method: 'notifications/message', params: { level, logger: 'waggle', data } })
        .catch(() => undefined);
    };
    let resumedInMs: number | undefined;
    try {
      const out = await tool.run(parsed.data, {
        caller,
        signal: entry?.signal ?? extra.signal,
        log: reqLog,
        progress,
        notify,
        ...(requestBaseUrl ? { requestBaseUrl } : {}),
        onResumed: (ms) => {
          resumedInMs = ms;
        },
      });
      if (entry?.interrupted()) {
        done('user_error');
        return errorResult(INTERRUPTED, 'gateway_restarting');
      }
      done('ok');
      if (resumedInMs === undefined)
        return structuredResult(out as Record<string, unknown>, tool.present?.(out));
      const envId = (parsed.data as { environment_id?: string }).environment_id;
      const result = structuredResult(
        { ...(out as Record<string, unknown>), resumed_in_ms: resumedInMs },
        tool.present?.(out),
      );
      result.content.push({
        type: 'text',
        text: `environment "${envId}" was suspended (idle); it resumed in ${resumedInMs} ms before this call ran`,
      });
      return result;
    } catch (err) {
      if (entry?.interrupted()) {
        reqLog.info({ err: (err as Error).message }, 'tool call interrupted by shutdown');
        done('user_error');
        return errorResult(INTERRUPTED, 'gateway_restarting');
      }
      if (err instanceof UserError) {
        reqLog.info({ code: err.code, err: err.message }, 'tool call refused');
        done('user_error');
        return errorResult(err.message, err.code);
      }
      const incident = randomUUID();
      reqLog.error({ err, incident }, 'tool call failed');
      done('internal_error');
      throw new McpError(
        ErrorCode.InternalError,
        `internal error in ${tool.name} (incident ${incident}); retry, and report the incident id if it persists`,
      );
    }
  });
  return server;
}

const firstValue = (v: string | string[] | undefined): string | undefined =>
  (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim() || undefined;

/** scheme://host the client used, from Host (or X-Forwarded-Host/-Proto behind a proxy). */
function baseUrlOf(headers: Record<string, string | string[] | undefined> | undefined): string | undefined {
  if (!headers) return undefined;
  const host = firstValue(headers['x-forwarded-host']) ?? firstValue(headers.host);
  if (!host || !/^[A-Za-z0-9.\-:[\]]+$/.test(host)) return undefined;
  const proto = firstValue(headers['x-forwarded-proto']) === 'https' ? 'https' : 'http';
  return `${proto}://${host}`;
}
