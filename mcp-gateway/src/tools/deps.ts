import type { EnvironmentService } from '../services/environments.ts';
import type { PreviewService } from '../services/previews.ts';
import type { SandboxService } from '../services/sandbox.ts';
import type { TemplateService } from '../services/templates.ts';

/** What the tools need; built once in main.ts and shared by every session. */
export interface ToolDeps {
  environments: EnvironmentService;
  sandbox: SandboxService;
  previews: PreviewService;
  templates: Pick<TemplateService, 'list' | 'get'>;
  /** No authentication (WAGGLE_AUTH_MODE=insecure): preview URLs are refused. */
  insecure?: boolean;
  /** Base URL of preview links (WAGGLE_PUBLIC_URL); else taken from the MCP request's Host. */
  publicUrl?: string;
  limits: {
    defaultExecTimeoutMs: number;
    maxExecTimeoutMs: number;
    installTimeoutMs: number;
    maxFileBytes: number;
    maxOutputBytes: number;
    defaultIdleTimeoutMinutes: number;
    defaultNetwork: 'none' | 'internet';
    defaultIdleAction: 'delete' | 'suspend';
  };
}
