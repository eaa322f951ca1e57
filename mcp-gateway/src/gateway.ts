import type { KubeConfig } from '@kubernetes/client-node';
import { DEFAULT_EGRESS, DEFAULT_IDLE_ACTION, parseHostPort } from '@waggle/crds';
import {
  type AgentTlsSource,
  createNodeAgentClient,
  createRotatingNodeAgentClient,
  type NodeAgentClient,
  watchAgentTls,
} from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import { ApiKeyAuthenticator } from './auth/api-keys.ts';
import { type Authenticator, chainAuthenticators } from './auth/caller.ts';
import { KubernetesTokenAuthenticator } from './auth/kubernetes-tokens.ts';
import { ConcurrencyLimiter } from './auth/rate-limit.ts';
import { type GatewayConfig, isLoopbackListen } from './config.ts';
import { buildApp } from './http/app.ts';
import { startMetricsServer } from './http/metrics-server.ts';
import { makeOriginPolicy } from './http/origin-guard.ts';
import { previewResolver } from './http/preview-routes.ts';
import { bearerAuth, insecureAuth } from './http/request-auth.ts';
import { CallDrain } from './mcp/call-drain.ts';
import { createMcpServer } from './mcp/server-factory.ts';
import { SessionRegistry } from './mcp/sessions.ts';
import { createGatewayMetrics } from './metrics.ts';
import { ActivityRecorder } from './services/activity.ts';
import { EnvironmentCache } from './services/environment-cache.ts';
import { idleActionChoiceOf, networkChoiceOf } from './services/environment-spec.ts';
import { EnvironmentService } from './services/environments.ts';
import { PreviewService } from './services/previews.ts';
import { SandboxService } from './services/sandbox.ts';
import { TemplateService } from './services/templates.ts';
import { buildTools } from './tools/index.ts';
import { maxCallBodyBytes } from './tools/schemas.ts';
import { readVersion } from './version.ts';

export interface RunningGateway {
  /** e.g. http://127.0.0.1:8080/mcp */
  url: string;
  /** e.g. http://127.0.0.1:9090/metrics (WAGGLE_METRICS_LISTEN) */
  metricsUrl: string;
  close(): Promise<void>;
}

/** Wires caches → services → tools → sessions → HTTP, and listens. */
export async function startGateway(opts: {
  config: GatewayConfig;
  kc: KubeConfig;
  log: Logger;
  agentFactory?: (endpoint: string, nodeName: string) => NodeAgentClient;
}): Promise<RunningGateway> {
  const { config: c, kc, log } = opts;
  const loopback = isLoopbackListen(c.WAGGLE_LISTEN_ADDR);
  let sessions: SessionRegistry | undefined;
  let agentTls: AgentTlsSource | undefined;
  const metrics = createGatewayMetrics({
    sessions: () => sessions?.size ?? 0,
    certificates: () => (agentTls ? [agentTls.current().cert, agentTls.current().ca] : []),
  });

  let authenticate: ReturnType<typeof bearerAuth>;
  if (c.WAGGLE_AUTH_MODE === 'insecure') {
    log.warn(
      { namespace: c.WAGGLE_INSECURE_NAMESPACE, listen: c.WAGGLE_LISTEN_ADDR },
      'INSECURE MODE: no authentication; every caller shares one namespace. Loopback only; never use it in a cluster.',
    );
    authenticate = insecureAuth(c.WAGGLE_INSECURE_NAMESPACE);
  } else {
    const authenticators: Authenticator[] = [];
    if (c.WAGGLE_API_KEYS_FILE) {
      const keys = new ApiKeyAuthenticator(c.WAGGLE_API_KEYS_FILE);
      await keys.load();
      authenticators.push(keys);
    }
    authenticators.push(
      new KubernetesTokenAuthenticator(kc, {
        ttlMs: c.WAGGLE_AUTH_CACHE_TTL,
        staleOnErrorMs: c.WAGGLE_AUTH_STALE_ON_ERROR,
        negativeTtlMs: c.WAGGLE_AUTH_NEGATIVE_CACHE_TTL,
        failuresPerMinute: c.WAGGLE_AUTH_FAILURES_PER_MINUTE,
        reviewsPerSecond: c.WAGGLE_TOKEN_REVIEWS_PER_SECOND,
        onReview: (outcome) => metrics.tokenReviews.inc({ outcome }),
        ...(c.WAGGLE_TOKEN_AUDIENCES ? { audiences: c.WAGGLE_TOKEN_AUDIENCES } : {}),
      }),
    );
    authenticate = bearerAuth(chainAuthenticators(authenticators));
  }

  const cache = new EnvironmentCache(
    kc,
    log,
    c.WAGGLE_WATCH_NAMESPACE ? { namespace: c.WAGGLE_WATCH_NAMESPACE } : {},
  );
  let synced = false;
  void cache.synced.then(() => {
    synced = true;
  });
  const activity = new ActivityRecorder(kc, { intervalMs: c.WAGGLE_ACTIVITY_INTERVAL, log });
  const environments = new EnvironmentService(
    kc,
    cache,
    activity,
    {
      ...(c.WAGGLE_DEFAULT_CPUS !== undefined ? { cpus: c.WAGGLE_DEFAULT_CPUS } : {}),
      ...(c.WAGGLE_DEFAULT_MEMORY_MB !== undefined ? { memoryMiB: c.WAGGLE_DEFAULT_MEMORY_MB } : {}),
      idleTimeoutMinutes: c.WAGGLE_DEFAULT_TIMEOUT_MIN,
      maxPerCaller: c.WAGGLE_MAX_ENVIRONMENTS,
      createWaitTimeoutMs: c.WAGGLE_CREATE_WAIT_TIMEOUT,
      unschedulableGraceMs: c.WAGGLE_UNSCHEDULABLE_GRACE,
      resumeWaitTimeoutMs: c.WAGGLE_RESUME_WAIT_TIMEOUT,
      ...(c.WAGGLE_IDLE_ACTION ? { idleAction: c.WAGGLE_IDLE_ACTION } : {}),
      ...(c.WAGGLE_DEFAULT_NETWORK ? { network: c.WAGGLE_DEFAULT_NETWORK } : {}),
      maxLifetimeMs: c.WAGGLE_MAX_LIFETIME,
    },
    log,
  );
  agentTls = c.WAGGLE_AGENT_TLS_DIR
    ? watchAgentTls(c.WAGGLE_AGENT_TLS_DIR, { intervalMs: c.WAGGLE_AGENT_TLS_RELOAD_INTERVAL })
    : undefined;
  const sandbox = new SandboxService(
    cache,
    activity,
    opts.agentFactory ??
      ((endpoint, nodeName) =>
        agentTls
          ? createRotatingNodeAgentClient(endpoint, agentTls, nodeName)
          : createNodeAgentClient(endpoint)),
  );
  const previews = new PreviewService(kc, cache, environments, {
    maxPublicMs: c.WAGGLE_PREVIEW_MAX_EXPIRY,
    log,
  });
  const tools = buildTools({
    environments,
    templates: new TemplateService(kc),
    sandbox,
    previews,
    insecure: c.WAGGLE_AUTH_MODE === 'insecure',
    ...(c.WAGGLE_PUBLIC_URL ? { publicUrl: c.WAGGLE_PUBLIC_URL } : {}),
    limits: {
      defaultExecTimeoutMs: c.WAGGLE_DEFAULT_EXEC_TIMEOUT,
      maxExecTimeoutMs: c.WAGGLE_MAX_EXEC_TIMEOUT,
      installTimeoutMs: c.WAGGLE_INSTALL_TIMEOUT,
      maxFileBytes: c.WAGGLE_MAX_FILE_BYTES,
      maxOutputBytes: c.WAGGLE_MAX_OUTPUT_BYTES,
      defaultIdleTimeoutMinutes: c.WAGGLE_DEFAULT_TIMEOUT_MIN,
      defaultNetwork: c.WAGGLE_DEFAULT_NETWORK ?? networkChoiceOf(DEFAULT_EGRESS),
      defaultIdleAction: c.WAGGLE_IDLE_ACTION ?? idleActionChoiceOf(DEFAULT_IDLE_ACTION),
    },
  });

  const calls = new ConcurrencyLimiter(c.WAGGLE_MAX_CALLS_PER_CALLER);
  const drain = new CallDrain();
  sessions = new SessionRegistry({
    newServer: (caller) =>
      createMcpServer(
        caller,
        tools,
        log.child({ caller: caller.principal, namespace: caller.namespace }),
        metrics.observeTool,
        calls,
        drain,
      ),
    idleTimeoutMs: c.WAGGLE_SESSION_IDLE_TIMEOUT,
    maxSessions: c.WAGGLE_MAX_SESSIONS,
    maxSessionsPerCaller: c.WAGGLE_MAX_SESSIONS_PER_CALLER,
    log,
    draining: () => drain.draining,
  });

  const version = readVersion();
  const app = buildApp({
    sessions,
    authenticate,
    origin: makeOriginPolicy({
      allowedHosts: c.WAGGLE_ALLOWED_HOSTS,
      allowedOrigins: c.WAGGLE_ALLOWED_ORIGINS,
      loopback,
    }),
    metrics,
    // Not ready while draining: the Service stops sending new connections here.
    ready: () => synced && !drain.draining,
    bodyLimitBytes: maxCallBodyBytes(c.WAGGLE_MAX_FILE_BYTES),
    timeouts: {
      headersMs: c.WAGGLE_HEADERS_TIMEOUT,
      requestMs: c.WAGGLE_REQUEST_TIMEOUT,
      keepAliveMs: c.WAGGLE_KEEPALIVE_TIMEOUT,
    },
    preview: {
      resolve: previewResolver(previews, authenticate),
      // Traffic to a suspended environment resumes it (bounded by the proxy's open timeout).
      openPort: async (env, port, signal) =>
        sandbox.openPort(await environments.resumed(env, signal), port, signal),
      touch: (env) => sandbox.touch(env),
      log,
    },
    version,
    log,
  });
  const { host, port } = parseHostPort(c.WAGGLE_LISTEN_ADDR);
  await app.listen({ host, port });
  const addr = app.server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  const metricsServer = await startMetricsServer(c.WAGGLE_METRICS_LISTEN, metrics.registry);
  await cache.synced;
  log.info(
    {
      url: `http://${urlHost}:${boundPort}/mcp`,
      metrics: metricsServer.url,
      auth: c.WAGGLE_AUTH_MODE,
      version: version.version,
    },
    'mcp-gateway listening',
  );

  return {
    url: `http://${urlHost}:${boundPort}/mcp`,
    metricsUrl: metricsServer.url,
    async close() {
      // Answer every running tool call before the connections go (call-drain.ts).
      const drained = await drain.drain(c.WAGGLE_SHUTDOWN_GRACE, 5_000);
      if (drained.finished || drained.interrupted) log.info(drained, 'tool calls drained');
      await new Promise((r) => setTimeout(r, 200)); // the last answers reach their streams
      await sessions?.closeAll();
      await Promise.race([app.close(), new Promise((r) => setTimeout(r, 3_000).unref())]);
      await cache.stop();
      await metricsServer.close();
      agentTls?.close();
    },
  };
}
