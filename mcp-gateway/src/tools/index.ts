import type { ToolDefinition } from '../mcp/tool.ts';
import { createEnvironmentTool } from './create-environment.ts';
import type { ToolDeps } from './deps.ts';
import { destroyEnvironmentTool } from './destroy-environment.ts';
import { executeTool } from './execute.ts';
import { exposePortTool, unexposePortTool } from './expose-port.ts';
import { extendEnvironmentTool } from './extend-environment.ts';
import { installPackagesTool } from './install-packages.ts';
import { killProcessTool } from './kill-process.ts';
import { listEnvironmentsTool } from './list-environments.ts';
import { listFilesTool } from './list-files.ts';
import { listTemplatesTool } from './list-templates.ts';
import { processOutputTool } from './process-output.ts';
import { readFileTool } from './read-file.ts';
import { writeFileTool } from './write-file.ts';

export type { ToolDeps } from './deps.ts';

/** The eight tools, with the original Waggle's names and parameters. */
export const buildTools = (d: ToolDeps): ToolDefinition[] => [
  createEnvironmentTool(d),
  destroyEnvironmentTool(d),
  listEnvironmentsTool(d),
  listTemplatesTool(d),
  extendEnvironmentTool(d),
  executeTool(d),
  processOutputTool(d),
  killProcessTool(d),
  installPackagesTool(d),
  writeFileTool(d),
  readFileTool(d),
  listFilesTool(d),
  exposePortTool(d),
  unexposePortTool(d),
];
