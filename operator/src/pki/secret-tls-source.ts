import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { type AgentTls, type AgentTlsSource, assertUsableTls } from '@waggle/node-agent/client';
import type { Logger } from 'pino';

/**
 * The operator's own client identity towards node-agents, read from its Secret through the API
 * (not a volume): the leader creates that Secret at first start, so a mount would keep the very
 * pod that makes it from starting, and a kubelet refresh would add a minute to every renewal.
 * Until the Secret exists, `current()` throws (calls fail and are retried by the reconciler).
 */
export function secretAgentTls(
  kc: KubeConfig,
  opts: { namespace: string; secret: string; intervalMs: number; log: Logger },
): AgentTlsSource & { refresh(): Promise<void> } {
  const api = kc.makeApiClient(CoreV1Api);
  let tls: AgentTls | undefined;
  let version = 0;
  const decode = (v: string | undefined) => (v ? Buffer.from(v, 'base64').toString('utf8') : '');
  const refresh = async () => {
    const s = await api
      .readNamespacedSecret({ name: opts.secret, namespace: opts.namespace })
      .catch((err: { code?: number }) => {
        if (err.code === 404) return undefined;
        throw err;
      });
    if (!s) return;
    const next = {
      ca: decode(s.data?.['ca.crt']),
      cert: decode(s.data?.['tls.crt']),
      key: decode(s.data?.['tls.key']),
    };
    if (tls && next.ca === tls.ca && next.cert === tls.cert && next.key === tls.key) return;
    try {
      assertUsableTls(next); // an empty or unparsable certificate, or another certificate's key
    } catch (err) {
      opts.log.warn(
        { secret: opts.secret, err: (err as Error).message },
        'unusable agent client certificate',
      );
      return;
    }
    tls = next;
    version++;
    opts.log.info({ secret: opts.secret }, 'agent client certificate loaded');
  };
  const tick = () =>
    void refresh().catch((err: Error) =>
      opts.log.warn({ secret: opts.secret, err: err.message }, 'could not read the agent client certificate'),
    );
  tick();
  const timer = setInterval(tick, opts.intervalMs);
  timer.unref();
  return {
    current: () => {
      if (!tls) {
        throw new Error(
          `no node-agent client certificate yet (Secret ${opts.namespace}/${opts.secret}; the operator's leader creates it)`,
        );
      }
      return tls;
    },
    version: () => version,
    close: () => clearInterval(timer),
    refresh,
  };
}
