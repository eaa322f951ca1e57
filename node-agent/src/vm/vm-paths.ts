import { join } from 'node:path';

/** Files of one VM instance inside its state directory. */
export function vmPaths(vmDir: string) {
  return {
    record: join(vmDir, 'vm.json'),
    overlay: join(vmDir, 'overlay.qcow2'),
    clientKey: join(vmDir, 'id_ecdsa'),
    authorizedKeys: join(vmDir, 'authorized_keys'),
    hostKey: join(vmDir, 'ssh_host_key'),
    serialLog: join(vmDir, 'serial.log'),
    qmp: join(vmDir, 'qmp.sock'),
    pidFile: join(vmDir, 'qemu.pid'),
    /** QEMU's own stderr (start-up errors). */
    qemuLog: join(vmDir, 'qemu.log'),
    /** Empty directory QEMU chroots into once started. */
    chroot: join(vmDir, 'root'),
    /** The whole saved state of a suspended VM (ResumeVM continues it). */
    suspendState: join(vmDir, 'suspend.state'),
  };
}

/** Files of one template's snapshot (`<stateDir>/snapshots/<templateHash>/`). */
export function snapshotPaths(snapDir: string) {
  return {
    /** Saved machine state (memory + devices). */
    state: join(snapDir, 'state'),
    /** The snapshot VM's overlay, never written again: restored VMs' overlays are backed by it. */
    disk: join(snapDir, 'disk.qcow2'),
    clientKey: join(snapDir, 'id_ecdsa'),
    authorizedKeys: join(snapDir, 'authorized_keys'),
    hostKey: join(snapDir, 'ssh_host_key'),
    /** Written last: a snapshot directory without it is incomplete. */
    meta: join(snapDir, 'snapshot.json'),
  };
}
