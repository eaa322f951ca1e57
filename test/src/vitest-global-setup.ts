import type { TestProject } from 'vitest/node';
import { type ControlPlane, startControlPlane } from './control-plane.ts';

let controlPlane: ControlPlane | undefined;

/** Starts one real etcd + kube-apiserver for the integration project and provides its kubeconfig. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const say = (line: string) => process.stderr.write(`control plane: ${line}\n`);
  controlPlane = await startControlPlane({ log: say });
  say(
    `kube-apiserver ${controlPlane.serverVersion} (etcd + kube-apiserver built from Go modules) at ` +
      `${controlPlane.server}, ready in ${(controlPlane.startupMs / 1000).toFixed(1)} s`,
  );
  project.provide('kubeconfigPath', controlPlane.kubeconfigPath);
  project.provide('kubeServer', controlPlane.server);
  project.provide('kubeVersion', controlPlane.serverVersion);
  return async () => {
    await controlPlane?.stop();
    controlPlane = undefined;
  };
}
