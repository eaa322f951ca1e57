import { certificateExpiries } from '@waggle/node-agent/client';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The gateway's Prometheus metrics (served by http/metrics-server.ts; all listed in
 * docs/metrics.md). Tool calls carry the tool's name: `execute`'s duration is the exec duration
 * as the agent sees it (the node-agent's `waggle_agent_exec_seconds` is the guest's share).
 */
export function createGatewayMetrics(opts: {
  sessions: () => number;
  /** PEM certificates the gateway holds (its node-agent client identity and the CA it trusts). */
  certificates?: () => string[];
}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const toolCalls = new Counter({
    name: 'waggle_gateway_tool_calls_total',
    help: 'MCP tool calls by tool and outcome (ok, user_error, internal_error).',
    labelNames: ['tool', 'outcome'],
    registers: [registry],
  });
  const toolSeconds = new Histogram({
    name: 'waggle_gateway_tool_duration_seconds',
    help: 'MCP tool call duration by tool.',
    labelNames: ['tool'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const authFailures = new Counter({
    name: 'waggle_gateway_auth_failures_total',
    help: 'Requests refused by authentication (401) or authorization (403).',
    labelNames: ['status'],
    registers: [registry],
  });
  const tokenReviews = new Counter({
    name: 'waggle_gateway_token_reviews_total',
    help: 'TokenReviews sent to the apiserver, by outcome (authenticated, unauthenticated, wrong_audience, error).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const bodyTooLarge = new Counter({
    name: 'waggle_gateway_body_too_large_total',
    help: 'Requests refused with 413 (body larger than the largest tool call).',
    registers: [registry],
  });
  new Gauge({
    name: 'waggle_gateway_sessions',
    help: 'Open MCP sessions.',
    registers: [registry],
    collect() {
      this.set(opts.sessions());
    },
  });
  new Gauge({
    name: 'waggle_certificate_expiry_timestamp_seconds',
    help: 'When each mTLS certificate this process holds expires (Unix time), by identity (the CN)',
    labelNames: ['identity'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [identity, at] of certificateExpiries(opts.certificates?.() ?? []))
        this.set({ identity }, at);
    },
  });
  return {
    registry,
    authFailures,
    tokenReviews,
    bodyTooLarge,
    observeTool: (tool: string, outcome: string, ms: number) => {
      toolCalls.inc({ tool, outcome });
      toolSeconds.observe({ tool }, ms / 1000);
    },
  };
}
export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
