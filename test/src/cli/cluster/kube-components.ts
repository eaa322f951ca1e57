import { KUBE_COMPONENTS, type KubeComponent } from '../../kube-binaries.ts';
import { UsageError } from '../dispatch.ts';

/** The Kubernetes components named on the command line ("all" for every one). */
export function parseKubeComponents(
  names: readonly string[],
  fallback: KubeComponent[] = ['etcd', 'kube-apiserver', 'kubectl'],
): KubeComponent[] {
  if (names.includes('all')) return [...KUBE_COMPONENTS];
  for (const n of names) {
    if (!(KUBE_COMPONENTS as readonly string[]).includes(n)) {
      throw new UsageError(`unknown component "${n}"; choose from: ${KUBE_COMPONENTS.join(', ')}`);
    }
  }
  return names.length ? (names as KubeComponent[]) : fallback;
}
