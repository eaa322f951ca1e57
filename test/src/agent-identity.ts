import { RELEASE } from './stack.ts';

export type Kubectl = (args: string[], input?: string) => Promise<string>;

/** The audience the chart's gateway accepts by default (`gateway.tokenAudiences`). */
export const TOKEN_AUDIENCE = 'waggle';

/** The kubectl command that mints a token the gateway accepts. */
export const createTokenCommand = (sa: string, namespace: string, duration: string): string[] => [
  'create',
  'token',
  sa,
  '-n',
  namespace,
  '--audience',
  TOKEN_AUDIENCE,
  '--duration',
  duration,
];

/**
 * What a platform team does for an AI agent: a namespace, a ServiceAccount bound to the chart's
 * `<release>-agent` ClusterRole there, and a token for it, issued for the gateway's audience
 * (a token for the apiserver's own audience is refused). Idempotent (apply, not create).
 */
export async function grantAgent(
  k: Kubectl,
  opts: { namespace: string; serviceAccount?: string; duration?: string },
): Promise<string> {
  const sa = opts.serviceAccount ?? 'agent';
  const apply = async (args: string[]) =>
    k(['apply', '-f', '-'], await k([...args, '--dry-run=client', '-o', 'yaml']));
  await apply(['create', 'namespace', opts.namespace]);
  await apply(['create', 'serviceaccount', sa, '-n', opts.namespace]);
  await apply([
    'create',
    'rolebinding',
    'waggle-agent',
    '-n',
    opts.namespace,
    `--clusterrole=${RELEASE}-agent`,
    `--serviceaccount=${opts.namespace}:${sa}`,
  ]);
  return (await k(createTokenCommand(sa, opts.namespace, opts.duration ?? '1h'))).trim();
}
