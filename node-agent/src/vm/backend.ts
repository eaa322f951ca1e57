import type { VMNetwork } from './network/vm-network-record.ts';
import type { VMTemplate } from './vm-record.ts';

/** One VM as a backend sees it: where its files are, what machine it is, which network. */
export interface BackendInstance {
  instanceId: string;
  /** The instance's state directory (`<stateDir>/vms/<instanceId>/`). */
  dir: string;
  template: VMTemplate;
  network: VMNetwork;
}

/** What a VM's disk starts from: the runtime image (cold boot) or a snapshot's frozen disk. */
export type DiskSource = { kind: 'image'; path: string } | { kind: 'frozen'; path: string };

export interface LaunchOptions {
  /** Guest configuration files by name (authorized_keys, ssh_host_key, ca_bundle). */
  guestFiles: Record<string, string>;
  /** Runs the hypervisor inside the VM's network namespace (`ip netns exec <ns>`). */
  execPrefix: string[];
  /** The guest's DNS resolver as the hypervisor's user network must see it. */
  resolvConf: string;
  /** Continue a saved state (snapshot or suspend) instead of booting. */
  incomingState?: string;
}

/**
 * What a hypervisor does for one VM (docs/adr/0014). VMManager keeps what is neutral (records,
 * locks, network, cgroup, readiness, adoption, capacity); a Firecracker or libkrun backend
 * implements this interface and nothing else changes.
 */
export interface VmBackend {
  /** Part of every template hash: a snapshot is restorable only by the backend that made it. */
  readonly kind: string;
  /** A string only this instance's process has on its command line (guards against pid reuse). */
  marker(inst: Pick<BackendInstance, 'dir'>): string;
  /** The instance's writable disk (an overlay on the image or a frozen disk). */
  diskPath(inst: Pick<BackendInstance, 'dir'>): string;
  /** Creates the instance's disk on `source`, `sizeBytes` large (frozen disks keep their size). */
  prepareDisk(inst: BackendInstance, source: DiskSource, sizeBytes: number): Promise<void>;
  /**
   * Refuses an existing disk whose backing files are not among `allowedBacking` (checked before
   * a disk the VM's own process could write is opened again, e.g. at resume).
   */
  verifyDisk(inst: Pick<BackendInstance, 'dir'>, allowedBacking: ReadonlySet<string>): Promise<void>;
  /** Starts the VM (boot, or continue `incomingState`); resolves with its process id. */
  launch(inst: BackendInstance, opts: LaunchOptions): Promise<number>;
  /** Pauses the VM, writes its whole state (memory, devices) to `statePath` and stops it. */
  saveState(inst: BackendInstance, pid: number, statePath: string): Promise<{ bytes: number }>;
  /**
   * Lets a VM whose process is alive but paused run again — a save the agent did not finish (it
   * stopped mid-suspend: the state was never recorded, so the VM is still the running one).
   * Returns whether it had to. No-op for a running VM.
   */
  ensureRunning(inst: Pick<BackendInstance, 'dir'>): Promise<boolean>;
  /** Stops the VM's process (SIGTERM, then SIGKILL). Idempotent. */
  stop(inst: Pick<BackendInstance, 'dir'>, pid: number, graceMs?: number): Promise<void>;
  isAlive(inst: Pick<BackendInstance, 'dir'>, pid: number): Promise<boolean>;
  /** Its own start-up messages (for errors), if it keeps any. */
  startupLog(inst: Pick<BackendInstance, 'dir'>): Promise<string>;
  /** The guest's serial console log. */
  consolePath(inst: Pick<BackendInstance, 'dir'>): string;
}
