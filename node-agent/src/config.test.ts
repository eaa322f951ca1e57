import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';

describe('loadConfig', () => {
  it('fills documented defaults', () => {
    const c = loadConfig({});
    expect(c.WAGGLE_AGENT_LISTEN).toBe('127.0.0.1:7443');
    expect(c.WAGGLE_SSH_PORT_RANGE).toEqual({ from: 42000, to: 42999 });
    expect(c.WAGGLE_DEFAULT_EXEC_TIMEOUT).toBe(30_000);
    expect(c.WAGGLE_MAX_EXEC_TIMEOUT).toBe(300_000);
    expect(c.WAGGLE_GUEST_RUNTIMES).toEqual(['python', 'node', 'shell']);
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
        WAGGLE_SSH_PORT_RANGE: 'lots',
        WAGGLE_MAX_EXEC_TIMEOUT: 'forever',
        WAGGLE_RUNTIME_NODE_EXEC_COMMAND: 'node; rm -rf /',
        WAGGLE_GUEST_RUNTIMES: 'python,ruby',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/WAGGLE_SSH_PORT_RANGE="lots": use from-to/);
    expect(msg).toMatch(/WAGGLE_MAX_EXEC_TIMEOUT="forever": use a duration/);
    expect(msg).toMatch(/WAGGLE_RUNTIME_NODE_EXEC_COMMAND=.*use an absolute path/);
    expect(msg).toMatch(/WAGGLE_GUEST_RUNTIMES/);
  });
});
