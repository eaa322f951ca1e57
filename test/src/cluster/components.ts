import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { DaemonSpec } from './daemons.ts';
import { CLUSTER, type ClusterPaths } from './layout.ts';
import { etcdPki } from './pki.ts';

type Bins = Record<
  'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kubelet' | 'kube-proxy',
  string
>;

/** Writes a config file only when its content changes: kube-proxy exits when its config file is touched. */
async function writeIfChanged(path: string, content: string): Promise<void> {
  if ((await readFile(path, 'utf8').catch(() => undefined)) !== content) await writeFile(path, content);
}

const daemon = (p: ClusterPaths, name: string, command: string, args: string[]): DaemonSpec => ({
  name,
  command,
  args,
  logPath: join(p.logs, `${name}.log`),
  pidPath: join(p.pids, `${name}.pid`),
});

/**
 * etcd as a real control plane runs it: TLS on client and peer ports, and a client certificate
 * from etcd's own CA required (only the apiserver holds one). Without that, any process on the
 * node — a compromised pod with host networking, a guest that escaped its network — could read
 * every Secret straight from 127.0.0.1:12379.
 */
export const etcdDaemon = (p: ClusterPaths, b: Bins) => {
  const t = etcdPki(p);
  return daemon(p, 'etcd', b.etcd, [
    '--name=waggle',
    `--data-dir=${p.etcd}`,
    `--listen-client-urls=https://127.0.0.1:${CLUSTER.etcdClientPort}`,
    `--advertise-client-urls=https://127.0.0.1:${CLUSTER.etcdClientPort}`,
    `--listen-peer-urls=https://127.0.0.1:${CLUSTER.etcdPeerPort}`,
    `--initial-advertise-peer-urls=https://127.0.0.1:${CLUSTER.etcdPeerPort}`,
    `--initial-cluster=waggle=https://127.0.0.1:${CLUSTER.etcdPeerPort}`,
    `--cert-file=${t.serverCert}`,
    `--key-file=${t.serverKey}`,
    '--client-cert-auth=true',
    `--trusted-ca-file=${t.ca}`,
    `--peer-cert-file=${t.serverCert}`,
    `--peer-key-file=${t.serverKey}`,
    '--peer-client-cert-auth=true',
    `--peer-trusted-ca-file=${t.ca}`,
    '--log-level=warn',
  ]);
};

export const apiserverDaemon = (p: ClusterPaths, b: Bins) =>
  daemon(p, 'kube-apiserver', b['kube-apiserver'], [
    `--etcd-servers=https://127.0.0.1:${CLUSTER.etcdClientPort}`,
    `--etcd-cafile=${etcdPki(p).ca}`,
    `--etcd-certfile=${etcdPki(p).clientCert}`,
    `--etcd-keyfile=${etcdPki(p).clientKey}`,
    `--bind-address=${CLUSTER.nodeIP}`,
    `--advertise-address=${CLUSTER.nodeIP}`,
    `--secure-port=${CLUSTER.apiserverPort}`,
    `--tls-cert-file=${p.pki}/apiserver.crt`,
    `--tls-private-key-file=${p.pki}/apiserver.key`,
    `--client-ca-file=${p.pki}/ca.crt`,
    `--kubelet-client-certificate=${p.pki}/apiserver-kubelet-client.crt`,
    `--kubelet-client-key=${p.pki}/apiserver-kubelet-client.key`,
    `--kubelet-certificate-authority=${p.pki}/ca.crt`,
    '--kubelet-preferred-address-types=InternalIP',
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${p.pki}/sa.pub`,
    `--service-account-signing-key-file=${p.pki}/sa.key`,
    `--service-cluster-ip-range=${CLUSTER.serviceCIDR}`,
    '--authorization-mode=Node,RBAC',
    '--enable-admission-plugins=NodeRestriction',
    '--allow-privileged=true',
    `--cert-dir=${p.pki}/apiserver-generated`,
  ]);

export const controllerManagerDaemon = (p: ClusterPaths, b: Bins) =>
  daemon(p, 'kube-controller-manager', b['kube-controller-manager'], [
    `--kubeconfig=${p.pki}/kube-controller-manager.kubeconfig`,
    `--authentication-kubeconfig=${p.pki}/kube-controller-manager.kubeconfig`,
    `--authorization-kubeconfig=${p.pki}/kube-controller-manager.kubeconfig`,
    '--bind-address=127.0.0.1',
    '--leader-elect=false',
    '--use-service-account-credentials=true',
    `--service-account-private-key-file=${p.pki}/sa.key`,
    `--root-ca-file=${p.pki}/ca.crt`,
    `--cluster-signing-cert-file=${p.pki}/ca.crt`,
    `--cluster-signing-key-file=${p.pki}/ca.key`,
    `--service-cluster-ip-range=${CLUSTER.serviceCIDR}`,
    `--cluster-cidr=${CLUSTER.clusterCIDR}`,
    '--allocate-node-cidrs=false',
    '--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle',
  ]);

export const schedulerDaemon = (p: ClusterPaths, b: Bins) =>
  daemon(p, 'kube-scheduler', b['kube-scheduler'], [
    `--kubeconfig=${p.pki}/kube-scheduler.kubeconfig`,
    `--authentication-kubeconfig=${p.pki}/kube-scheduler.kubeconfig`,
    `--authorization-kubeconfig=${p.pki}/kube-scheduler.kubeconfig`,
    '--bind-address=127.0.0.1',
    '--leader-elect=false',
  ]);

export async function kubeletDaemon(p: ClusterPaths, b: Bins): Promise<DaemonSpec> {
  const config = {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: CLUSTER.nodeIP,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: `${p.pki}/ca.crt` },
    },
    authorization: { mode: 'Webhook' },
    tlsCertFile: `${p.pki}/kubelet-serving.crt`,
    tlsPrivateKeyFile: `${p.pki}/kubelet-serving.key`,
    containerRuntimeEndpoint: `unix://${p.containerdSocket}`,
    // cgroup v1 (hybrid) here: allowed explicitly, with the cgroupfs driver (no systemd).
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    failSwapOn: false,
    podCIDR: CLUSTER.podCIDR,
    resolvConf: '/etc/resolv.conf',
    podLogsDir: p.kubeletPods,
    // A development node on a shared disk: only evict when the disk is really full.
    evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '2%', 'imagefs.available': '2%' },
    imageGCHighThresholdPercent: 99,
    imageGCLowThresholdPercent: 98,
    maxPods: 60,
    serializeImagePulls: false,
  };
  const configPath = join(p.config, 'kubelet.yaml');
  await writeIfChanged(configPath, stringify(config));
  return daemon(p, 'kubelet', b.kubelet, [
    `--config=${configPath}`,
    `--kubeconfig=${p.pki}/kubelet.kubeconfig`,
    `--root-dir=${p.kubelet}`,
    `--hostname-override=${CLUSTER.nodeName}`,
    `--node-ip=${CLUSTER.nodeIP}`,
    '--node-labels=waggle.dev/kvm-capable=true',
    '--v=1',
  ]);
}

export async function kubeProxyDaemon(p: ClusterPaths, b: Bins): Promise<DaemonSpec> {
  const config = {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig: `${p.pki}/kube-proxy.kubeconfig` },
    mode: 'iptables',
    clusterCIDR: CLUSTER.clusterCIDR,
    hostnameOverride: CLUSTER.nodeName,
    bindAddress: CLUSTER.nodeIP,
    metricsBindAddress: '127.0.0.1:10249',
    healthzBindAddress: '127.0.0.1:10256',
    // No CAP_SYS_RESOURCE: kube-proxy must not try to raise conntrack limits.
    conntrack: { maxPerCore: 0 },
    oomScoreAdj: 0,
  };
  const configPath = join(p.config, 'kube-proxy.yaml');
  await writeIfChanged(configPath, stringify(config));
  return daemon(p, 'kube-proxy', b['kube-proxy'], [`--config=${configPath}`]);
}
