import type { CallToolResult, LoggingLevel, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Caller } from '../auth/caller.ts';

/** What a tool handler gets besides its arguments. */
export interface ToolContext {
  caller: Caller;
  signal: AbortSignal;
  log: Logger;
  /** Sends notifications/progress when the client asked for it (a progressToken); else a no-op. */
  progress: (progress: number, message: string, total?: number) => void;
  /**
   * Sends an MCP log message (notifications/message) on this call's stream, when the client's
   * logging level (logging/setLevel; default: all) lets it through.
   */
  notify: (level: LoggingLevel, data: unknown) => void;
  /** scheme://host of the HTTP request that carried the call (X-Forwarded-* honoured), if known. */
  requestBaseUrl?: string;
  /**
   * The call's environment was suspended and has resumed after `waitedMs` (EnvironmentService
   * resolveRunning calls it): the result then carries `resumed_in_ms` and says so in its text.
   */
  onResumed?: (waitedMs: number) => void;
}

/** One MCP tool: schemas, hints and a handler that returns the structured result. */
export interface ToolDefinition<I extends z.ZodObject = z.ZodObject, O extends z.ZodObject = z.ZodObject> {
  name: string;
  title: string;
  description: string;
  input: I;
  output: O;
  annotations: ToolAnnotations;
  run: (args: z.output<I>, ctx: ToolContext) => Promise<z.output<O>>;
  /** Content blocks to send instead of the result's JSON text (e.g. an image beside it). */
  present?: (out: z.output<O>) => CallToolResult['content'];
}

/** Keeps the argument/result types of each tool while collecting them in one list. */
export const defineTool = <I extends z.ZodObject, O extends z.ZodObject>(
  t: ToolDefinition<I, O>,
): ToolDefinition => t as unknown as ToolDefinition;

/**
 * The output schema a tool is listed with: tools that act on an environment (their input has
 * `environment_id`) may report that it was suspended and resumed first (`resumed_in_ms`).
 */
export function listedOutputSchema(t: ToolDefinition): z.ZodObject {
  if (!('environment_id' in t.input.shape)) return t.output;
  return t.output.extend({
    resumed_in_ms: z
      .number()
      .int()
      .optional()
      .describe('set when the environment was suspended: how long this call waited for it to resume'),
  });
}

/** A successful result: the structured object, and the same JSON as text for older clients. */
export function structuredResult(
  value: Record<string, unknown>,
  content: CallToolResult['content'] = [{ type: 'text', text: JSON.stringify(value) }],
): CallToolResult {
  return { content, structuredContent: value };
}

/** A user-facing failure: `isError` with a message that says what happened and what to do. */
export function errorResult(message: string, code: string): CallToolResult {
  return {
    content: [{ type: 'text', text: message }],
    isError: true,
    _meta: { 'waggle.dev/error': code },
  };
}

/** Turns zod issues into "parameter: problem" lines a model can act on. */
export function describeInputIssues(tool: string, error: z.ZodError): string {
  const lines = error.issues.map((i) => {
    const where = i.path.length ? i.path.join('.') : '(arguments)';
    return `- ${where}: ${i.message}`;
  });
  return `invalid arguments for ${tool}:\n${lines.join('\n')}`;
}
