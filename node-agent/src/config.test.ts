import { CREATE_DEADLINE_DEFAULTS } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';

describe('loadConfig', () => {
  it('fills documented defaults', () => {
    const c = loadConfig({});
    expect(c.WAGGLE_AGENT_LISTEN).toBe('127.0.0.1:7443');
    expect(c.WAGGLE_VM_NETWORK_CIDR).toBe('10.254.0.0/16');
    expect(c.WAGGLE_EGRESS_ALLOW_CIDRS).toEqual([]);
    expect(c.WAGGLE_DEFAULT_EXEC_TIMEOUT).toBe(30_000);
    expect(c.WAGGLE_MAX_EXEC_TIMEOUT).toBe(300_000);
    expect(c.WAGGLE_GUEST_RUNTIMES).toEqual(['python', 'node', 'shell']);
  });

  it('takes IPv6 listen addresses in brackets and refuses them without', () => {
    expect(loadConfig({ WAGGLE_AGENT_LISTEN: '[::1]:7443' }).WAGGLE_AGENT_LISTEN).toBe('[::1]:7443');
    expect(() => loadConfig({ WAGGLE_AGENT_OPS_LISTEN: '::1:7444' })).toThrow(
      /WAGGLE_AGENT_OPS_LISTEN="::1:7444": use host:port/,
    );
    expect(() => loadConfig({ WAGGLE_ACCEL: 'hvf' })).toThrow(/WAGGLE_ACCEL="hvf"/);
  });

  it('parses the compatibility variables', () => {
    const c = loadConfig({
      WAGGLE_DEFAULT_EXEC_TIMEOUT: '45s',
      WAGGLE_MAX_EXEC_TIMEOUT: '10m',
      WAGGLE_RUNTIME_PYTHON_EXEC_COMMAND: '/opt/py/bin/python3',
      WAGGLE_GUEST_RUNTIMES: 'python, shell',
    });
    expect(c.WAGGLE_DEFAULT_EXEC_TIMEOUT).toBe(45_000);
    expect(c.WAGGLE_MAX_EXEC_TIMEOUT).toBe(600_000);
    expect(c.WAGGLE_RUNTIME_PYTHON_EXEC_COMMAND).toBe('/opt/py/bin/python3');
    expect(c.WAGGLE_GUEST_RUNTIMES).toEqual(['python', 'shell']);
  });

  it('reports every malformed variable in one error', () => {
    let err: unknown;
    try {
      loadConfig({
        WAGGLE_VM_NETWORK_CIDR: '10.254.0.1/16',
        WAGGLE_EGRESS_ALLOW_CIDRS: '203.0.113.0/24, lots',
        WAGGLE_MAX_EXEC_TIMEOUT: 'forever',
        WAGGLE_RUNTIME_NODE_EXEC_COMMAND: 'node; rm -rf /',
        WAGGLE_GUEST_RUNTIMES: 'python,ruby',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/WAGGLE_VM_NETWORK_CIDR="10.254.0.1\/16": use an IPv4 CIDR/);
    expect(msg).toMatch(/WAGGLE_EGRESS_ALLOW_CIDRS.*"203.0.113.0\/24, lots": use a CIDR/);
    expect(msg).toMatch(/WAGGLE_MAX_EXEC_TIMEOUT="forever": use a duration/);
    expect(msg).toMatch(/WAGGLE_RUNTIME_NODE_EXEC_COMMAND=.*use an absolute path/);
    expect(msg).toMatch(/WAGGLE_GUEST_RUNTIMES/);
  });

  it('bounds a guest boot by less than the operator gives a whole CreateVM', () => {
    expect(loadConfig({}).WAGGLE_BOOT_TIMEOUT).toBe(CREATE_DEADLINE_DEFAULTS.guestBootMs);
    expect(loadConfig({}).WAGGLE_BOOT_TIMEOUT).toBeLessThan(CREATE_DEADLINE_DEFAULTS.createVMMs);
    expect(loadConfig({ WAGGLE_BOOT_TIMEOUT: '4m' }).WAGGLE_BOOT_TIMEOUT).toBe(240_000);
  });
});
