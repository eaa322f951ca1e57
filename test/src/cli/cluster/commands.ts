// `pnpm waggle cluster <command>` (also `pnpm cluster <command>`): the local cluster on its own
// and the harness's toolchains, one file per command.
import { KUBE_COMPONENTS, KUBE_VERSION } from '../../kube-binaries.ts';
import type { CommandGroup } from '../dispatch.ts';

export const CLUSTER_COMMANDS: CommandGroup = {
  name: 'cluster',
  summary: 'the local cluster and the harness toolchains (pnpm waggle cluster --help)',
  commands: [
    {
      name: 'control-plane',
      summary: `start etcd + kube-apiserver ${KUBE_VERSION} on loopback, print the KUBECONFIG; Ctrl-C stops and removes it`,
      load: () => import('./control-plane.ts'),
    },
    {
      name: 'build-kube',
      args: '[component…|all]',
      summary: 'build and cache Kubernetes binaries from Go modules (default: etcd kube-apiserver kubectl)',
      load: () => import('./build-kube.ts'),
    },
    {
      name: 'which',
      args: '<component>',
      summary: 'print the cached path of a Kubernetes binary (building it if needed)',
      load: () => import('./which.ts'),
    },
    {
      name: 'build-helm',
      summary: 'build and cache helm from its Go module (both supported major versions)',
      load: () => import('./build-helm.ts'),
    },
    {
      name: 'build-registry',
      summary:
        'build and cache the CNCF distribution registry (the OCI registry of tests) from its Go module',
      load: () => import('./build-registry.ts'),
    },
    {
      name: 'up',
      summary: 'bring up the local single-node cluster (idempotent; needs root)',
      load: () => import('./up.ts'),
    },
    {
      name: 'down',
      summary: 'stop it and remove everything it created on this machine',
      load: () => import('./down.ts'),
    },
    {
      name: 'status',
      summary: 'which cluster components run',
      load: () => import('./status.ts'),
    },
    {
      name: 'images',
      summary:
        'build the operator, gateway and node-agent images with podman (contexts in ~/.cache/waggle/build)',
      load: () => import('./images.ts'),
    },
  ],
  footer: `components: ${KUBE_COMPONENTS.join(' ')}`,
};
