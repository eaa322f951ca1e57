import type { Accelerator } from '@waggle/crds';
import { tscKernelArgs } from './host-tsc.ts';

/** TCG translation cache size (QEMU's default is 1 GiB). */
export const TCG_TB_SIZE_MIB = 128;

export interface QemuLaunchSpec {
  /** Shown in `ps` and QEMU's own messages. */
  name: string;
  accelerator: Accelerator;
  cpus: number;
  memoryMiB: number;
  kernelPath: string;
  initrdPath: string;
  overlayPath: string;
  /** Address and port QEMU listens on (in its network namespace) and forwards to the guest's sshd. */
  sshForward: { host: string; port: number };
  /** `none` isolates the guest: QEMU's user network with restrict=on (only the forward works). */
  egress: 'none' | 'all';
  /**
   * Confine QEMU (docs/security.md): seccomp with everything QEMU does not need denied, and
   * after start-up run as `uid:gid` (an id no other VM and no host account uses) chrooted into an
   * empty directory. Unset only for the raw-QEMU benchmark baseline.
   */
  confine?: { uid: number; gid: number; chrootDir: string; style: ConfineStyle };
  /** fw_cfg entries under opt/waggle/: name → file path on the host. */
  fwCfgFiles: Record<string, string>;
  serialLogPath: string;
  qmpSocketPath: string;
  pidFilePath: string;
  /** Host TSC rate for TCG guests (skips PIT calibration). */
  tscKHz?: number;
  /** Continue a saved state instead of booting (`fd:3`: the state file is the child's fd 3). */
  incoming?: string;
}

/**
 * How a QEMU drops to the VM's uid and chroots once started: `-run-with user=…,chroot=…` (QEMU 9.1
 * and later; 10.0 removed the old options) or `-runas` and `-chroot` (QEMU 7.2, Debian 12).
 */
export type ConfineStyle = 'run-with' | 'runas';

/** The confinement options a QEMU's `-help` offers. */
export function confineStyleOf(qemuHelp: string): ConfineStyle {
  return /^-run-with\b.*\buser=/m.test(qemuHelp) ? 'run-with' : 'runas';
}

/** A value inside a QEMU option list: commas doubled. */
const optValue = (v: string) => v.replaceAll(',', ',,');

/** QEMU `microvm` command line for one environment. Pure: no I/O. */
export function buildQemuArgs(s: QemuLaunchSpec): string[] {
  const kernelCmdline = [
    'console=ttyS0',
    'root=/dev/vda',
    'rw',
    'quiet',
    'panic=-1',
    ...(s.accelerator === 'tcg' && s.tscKHz ? tscKernelArgs(s.tscKHz) : []),
  ].join(' ');
  const netdev = [
    'user',
    'id=n0',
    ...(s.egress === 'none' ? ['restrict=on'] : []),
    // No IPv6 inside the guest's user network: its gateway would be another alias of the host.
    'ipv6=off',
    `hostfwd=tcp:${s.sshForward.host}:${s.sshForward.port}-:22`,
  ].join(',');
  return [
    '-name',
    `${s.name},process=${s.name}`,
    '-M',
    'microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on',
    // qboot: loads the kernel straight from fw_cfg. Named, because Debian 13 makes microvm's
    // default firmware SeaBIOS, which without option ROMs finds no kernel ("not a bootable disk").
    '-bios',
    'qboot.rom',
    '-accel',
    // TCG's translation cache is QEMU memory the guest's code fills: bounded, so the VM's cgroup
    // memory limit (guest memory + QEMU_OVERHEAD_MIB) holds.
    s.accelerator === 'tcg' ? `tcg,tb-size=${TCG_TB_SIZE_MIB}` : s.accelerator,
    '-cpu',
    s.accelerator === 'kvm' ? 'host' : 'max',
    '-smp',
    String(s.cpus),
    '-m',
    `${s.memoryMiB}M`,
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-kernel',
    s.kernelPath,
    '-initrd',
    s.initrdPath,
    '-append',
    kernelCmdline,
    '-drive',
    `id=root,file=${s.overlayPath},format=qcow2,if=none,cache=unsafe,discard=unmap`,
    '-device',
    'virtio-blk-device,drive=root',
    '-netdev',
    netdev,
    '-device',
    'virtio-net-device,netdev=n0',
    ...Object.entries(s.fwCfgFiles).flatMap(([key, file]) => [
      '-fw_cfg',
      `name=opt/waggle/${key},file=${file}`,
    ]),
    // Appending, so that the agent can cut the log when a guest floods its console.
    '-chardev',
    `file,id=serial0,path=${s.serialLogPath},append=on`,
    '-serial',
    'chardev:serial0',
    '-qmp',
    `unix:${s.qmpSocketPath},server=on,wait=off`,
    '-display',
    'none',
    ...(s.confine
      ? [
          '-sandbox',
          // elevateprivileges must allow set*id: QEMU installs the filter before it drops to the
          // VM's uid (and checks that setuid(0) fails afterwards).
          'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny',
          ...(s.confine.style === 'run-with'
            ? ['-run-with', `user=${s.confine.uid}:${s.confine.gid},chroot=${optValue(s.confine.chrootDir)}`]
            : ['-runas', `${s.confine.uid}:${s.confine.gid}`, '-chroot', s.confine.chrootDir]),
        ]
      : []),
    ...(s.incoming ? ['-incoming', s.incoming] : []),
    '-pidfile',
    s.pidFilePath,
  ];
}
