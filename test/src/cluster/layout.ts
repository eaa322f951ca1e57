import { join } from 'node:path';

/** Fixed facts of the local single-node cluster (all addresses are local to this machine). */
export const CLUSTER = {
  name: 'waggle-local',
  nodeName: 'waggle-node',
  /** An extra address on `lo`: kubelet refuses a loopback node IP, and there is no dummy module. */
  nodeIP: '10.250.255.1',
  podCIDR: '10.244.0.0/24',
  clusterCIDR: '10.244.0.0/16',
  serviceCIDR: '10.96.0.0/12',
  apiserverServiceIP: '10.96.0.1',
  apiserverPort: 6443,
  etcdClientPort: 12379,
  etcdPeerPort: 12380,
  bridge: 'waggle0',
  cniNetwork: 'waggle',
  /** Cgroup the chart's node-agent moves each QEMU into (WAGGLE_VM_CGROUP_NAME's default). */
  vmCgroup: 'waggle-vms',
  pauseImage: 'localhost/waggle/pause:1',
  /** The node's OCI registry (loopback): the runtimes' built-in images (guest-registry.ts). */
  registry: '127.0.0.1:15000',
} as const;

/** Where the cluster keeps its state; everything `down` removes lives under these two. */
export function clusterPaths(base = process.env.WAGGLE_CLUSTER_DIR ?? '/var/lib/waggle-cluster') {
  const run = process.env.WAGGLE_CLUSTER_RUN_DIR ?? '/run/waggle-cluster';
  return {
    base,
    run,
    pki: join(base, 'pki'),
    logs: join(base, 'logs'),
    pids: join(base, 'pids'),
    etcd: join(base, 'etcd'),
    kubelet: join(base, 'kubelet'),
    kubeletPods: join(base, 'pods-logs'),
    containerdRoot: join(base, 'containerd'),
    containerdState: join(run, 'containerd'),
    containerdSocket: join(run, 'containerd', 'containerd.sock'),
    cniConf: join(base, 'cni'),
    config: join(base, 'config'),
    adminKubeconfig: join(base, 'admin.kubeconfig'),
  };
}
export type ClusterPaths = ReturnType<typeof clusterPaths>;
