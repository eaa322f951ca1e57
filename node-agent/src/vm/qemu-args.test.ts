import { describe, expect, it } from 'vitest';
import { buildQemuArgs, confineStyleOf, type QemuLaunchSpec } from './qemu-args.ts';

const spec: QemuLaunchSpec = {
  name: 'waggle-vm1',
  accelerator: 'tcg',
  cpus: 2,
  memoryMiB: 1024,
  kernelPath: '/k/vmlinuz',
  initrdPath: '/k/initramfs.img',
  overlayPath: '/s/vm1/overlay.qcow2',
  sshForward: { host: '10.254.0.2', port: 22 },
  egress: 'all',
  fwCfgFiles: { authorized_keys: '/s/vm1/authorized_keys' },
  serialLogPath: '/s/vm1/serial.log',
  qmpSocketPath: '/s/vm1/qmp.sock',
  pidFilePath: '/s/vm1/qemu.pid',
  tscKHz: 2_445_430,
};

const argAfter = (args: string[], flag: string) => args[args.indexOf(flag) + 1];

describe('buildQemuArgs', () => {
  it('builds a detached microvm with the requested size and an SSH forward on the namespace address', () => {
    const args = buildQemuArgs(spec);
    expect(argAfter(args, '-M')).toMatch(/^microvm,/);
    expect(argAfter(args, '-bios')).toBe('qboot.rom');
    expect(argAfter(args, '-accel')).toBe('tcg,tb-size=128');
    expect(argAfter(args, '-serial')).toBe('chardev:serial0');
    expect(argAfter(args, '-chardev')).toBe('file,id=serial0,path=/s/vm1/serial.log,append=on');
    expect(argAfter(args, '-smp')).toBe('2');
    expect(argAfter(args, '-m')).toBe('1024M');
    expect(argAfter(args, '-netdev')).toBe('user,id=n0,ipv6=off,hostfwd=tcp:10.254.0.2:22-:22');
    expect(args).not.toContain('-daemonize'); // spawn=deny forbids its fork; launched detached
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

  it('continues a saved state from fd 3 instead of booting when asked, with the same machine', () => {
    const boot = buildQemuArgs(spec);
    const restore = buildQemuArgs({ ...spec, incoming: 'fd:3' });
    expect(boot).not.toContain('-incoming');
    expect(argAfter(restore, '-incoming')).toBe('fd:3');
    // Everything else is the boot's command line: a state restores only into the same machine.
    const i = restore.indexOf('-incoming');
    expect([...restore.slice(0, i), ...restore.slice(i + 2)]).toEqual(boot);
  });

  it('isolates the guest network when egress is none', () => {
    expect(argAfter(buildQemuArgs({ ...spec, egress: 'none' }), '-netdev')).toBe(
      'user,id=n0,restrict=on,ipv6=off,hostfwd=tcp:10.254.0.2:22-:22',
    );
  });

  it('confines QEMU: seccomp sandbox, an unprivileged uid:gid and an empty chroot', () => {
    const args = buildQemuArgs({
      ...spec,
      confine: { uid: 1073807360, gid: 1073807360, chrootDir: '/s/vm1/root', style: 'runas' },
    });
    expect(argAfter(args, '-sandbox')).toBe(
      'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny',
    );
    expect(argAfter(args, '-runas')).toBe('1073807360:1073807360');
    expect(argAfter(args, '-chroot')).toBe('/s/vm1/root');
    expect(buildQemuArgs(spec)).not.toContain('-sandbox');
  });

  it('confines a QEMU without -runas (10.0 removed it) with -run-with, commas in the path doubled', () => {
    const args = buildQemuArgs({
      ...spec,
      confine: { uid: 1073807360, gid: 1073807360, chrootDir: '/s/a,b/root', style: 'run-with' },
    });
    expect(argAfter(args, '-run-with')).toBe('user=1073807360:1073807360,chroot=/s/a,,b/root');
    expect(args).not.toContain('-runas');
    expect(args).not.toContain('-chroot');
    expect(argAfter(args, '-sandbox')).toMatch(/^on,/);
  });

  it('tells the confinement options from QEMU -help (7.2: -runas; 10.0: -run-with user=)', () => {
    const qemu72 =
      '-runas user     change to user id user just before starting the VM\n-chroot dir     chroot';
    const qemu10 =
      '-run-with [async-teardown=on|off][,chroot=dir][user=username|uid:gid]\n                Set miscellaneous';
    // 8.x has -run-with but only for async-teardown and chroot: still -runas.
    const qemu82 = '-run-with [async-teardown=on|off][,chroot=dir]\n-runas user';
    expect(confineStyleOf(qemu72)).toBe('runas');
    expect(confineStyleOf(qemu10)).toBe('run-with');
    expect(confineStyleOf(qemu82)).toBe('runas');
  });
});
