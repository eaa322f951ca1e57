export * from './cache.ts';
export * from './control-plane.ts';
export * from './guest-images.ts';
export * from './kube-binaries.ts';
export * from './kubeconfig.ts';
export * from './pki.ts';
export * from './ports.ts';
export * from './processes.ts';
