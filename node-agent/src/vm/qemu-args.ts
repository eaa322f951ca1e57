import { tscKernelArgs } from './host-tsc.ts';

export type Accelerator = 'kvm' | 'tcg';

export interface QemuLaunchSpec {
  /** Shown in `ps` and QEMU's own messages. */
  name: string;
  accelerator: Accelerator;
  cpus: number;
  memoryMiB: number;
  kernelPath: string;
  initrdPath: string;
  overlayPath: string;
  /** Host loopback port forwarded to the guest's sshd. */
  sshPort: number;
  /** `none` isolates the guest: QEMU's user network with restrict=on (only the forward works). */
  egress: 'none' | 'all';
  /** fw_cfg entries under opt/waggle/: name → file path on the host. */
  fwCfgFiles: Record<string, string>;
  serialLogPath: string;
  qmpSocketPath: string;
  pidFilePath: string;
  /** Host TSC rate for TCG guests (skips PIT calibration). */
  tscKHz?: number;
}

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
    `hostfwd=tcp:127.0.0.1:${s.sshPort}-:22`,
  ].join(',');
  return [
    '-name',
    `${s.name},process=${s.name}`,
    '-M',
    'microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on',
    '-accel',
    s.accelerator,
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
    '-serial',
    `file:${s.serialLogPath}`,
    '-qmp',
    `unix:${s.qmpSocketPath},server=on,wait=off`,
    '-display',
    'none',
    '-daemonize',
    '-pidfile',
    s.pidFilePath,
  ];
}
