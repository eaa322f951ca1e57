import { describe, expect, it } from 'vitest';
import { buildQemuArgs, type QemuLaunchSpec } from './qemu-args.ts';

const spec: QemuLaunchSpec = {
  name: 'waggle-vm1',
  accelerator: 'tcg',
  cpus: 2,
  memoryMiB: 1024,
  kernelPath: '/k/vmlinuz',
  initrdPath: '/k/initramfs.img',
  overlayPath: '/s/vm1/overlay.qcow2',
  sshPort: 42001,
  egress: 'all',
  fwCfgFiles: { authorized_keys: '/s/vm1/authorized_keys' },
  serialLogPath: '/s/vm1/serial.log',
  qmpSocketPath: '/s/vm1/qmp.sock',
  pidFilePath: '/s/vm1/qemu.pid',
  tscKHz: 2_445_430,
};

const argAfter = (args: string[], flag: string) => args[args.indexOf(flag) + 1];

describe('buildQemuArgs', () => {
  it('builds a detached microvm with the requested size and a loopback-only SSH forward', () => {
    const args = buildQemuArgs(spec);
    expect(argAfter(args, '-M')).toMatch(/^microvm,/);
    expect(argAfter(args, '-accel')).toBe('tcg');
    expect(argAfter(args, '-smp')).toBe('2');
    expect(argAfter(args, '-m')).toBe('1024M');
    expect(argAfter(args, '-netdev')).toBe('user,id=n0,hostfwd=tcp:127.0.0.1:42001-:22');
    expect(args).toContain('-daemonize');
    expect(argAfter(args, '-fw_cfg')).toBe('name=opt/waggle/authorized_keys,file=/s/vm1/authorized_keys');
  });

  it('passes the host TSC rate to TCG guests so they do not calibrate against the PIT', () => {
    expect(argAfter(buildQemuArgs(spec), '-append')).toContain(
      'tsc_early_khz=2445430 lpj=9781720 no_timer_check',
    );
    expect(argAfter(buildQemuArgs({ ...spec, accelerator: 'kvm' }), '-append')).not.toContain(
      'tsc_early_khz',
    );
  });

  it('isolates the guest network when egress is none', () => {
    expect(argAfter(buildQemuArgs({ ...spec, egress: 'none' }), '-netdev')).toBe(
      'user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:42001-:22',
    );
  });
});
