import { RELEASE } from './stack.ts';

export type Kubectl = (args: string[], input?: string) => Promise<string>;

/**
 * What a platform team does for an AI agent: a namespace, a ServiceAccount bound to the chart's
 * `<release>-agent` ClusterRole there, and a token for it. Idempotent (apply, not create).
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
  return (
    await k(['create', 'token', sa, '-n', opts.namespace, `--duration=${opts.duration ?? '1h'}`])
  ).trim();
}
