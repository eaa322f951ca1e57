// How the node-agent judges its host: which accelerator VMs get, the TSC frequency a TCG guest is
// told, which guest images it boots. Exported (`@waggle/node-agent/host`) for the tools beside the
// agent that must judge a host the same way (`pnpm waggle doctor`, the benchmarks); the operator
// and the gateway never need it (they use `@waggle/node-agent/client`).

export { resolveGuestImages } from './guest-images.ts';
export { type AcceleratorChoice, detectAccelerator } from './vm/accelerator.ts';
export { readHostTscKHz } from './vm/host-tsc.ts';
