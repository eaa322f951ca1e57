import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A self-contained kubeconfig (certificates embedded) for one user on one cluster. */
export function renderKubeconfig(opts: {
  server: string;
  caPem: string;
  user: string;
  certPem?: string;
  keyPem?: string;
  token?: string;
  cluster?: string;
}): string {
  const cluster = opts.cluster ?? 'waggle';
  const user: Record<string, string> = {};
  if (opts.certPem) user['client-certificate-data'] = b64(opts.certPem);
  if (opts.keyPem) user['client-key-data'] = b64(opts.keyPem);
  if (opts.token) user.token = opts.token;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: cluster, cluster: { server: opts.server, 'certificate-authority-data': b64(opts.caPem) } },
    ],
    users: [{ name: opts.user, user }],
    contexts: [{ name: cluster, context: { cluster, user: opts.user } }],
    'current-context': cluster,
  });
}

export async function writeKubeconfig(
  path: string,
  opts: Parameters<typeof renderKubeconfig>[0],
): Promise<void> {
  await writeFile(path, renderKubeconfig(opts), { mode: 0o600 });
}
