import { describe, expect, it } from 'vitest';
import { isLoopbackListen, loadGatewayConfig } from './config.ts';

describe('gateway configuration', () => {
  it('has the original Waggle defaults', () => {
    const c = loadGatewayConfig({});
    expect(c).toMatchObject({
      WAGGLE_LISTEN_ADDR: '127.0.0.1:8080',
      WAGGLE_MAX_ENVIRONMENTS: 10,
      WAGGLE_DEFAULT_CPUS: 1,
      WAGGLE_DEFAULT_MEMORY_MB: 512,
      WAGGLE_DEFAULT_TIMEOUT_MIN: 30,
      WAGGLE_DEFAULT_EXEC_TIMEOUT: 30_000,
      WAGGLE_MAX_EXEC_TIMEOUT: 300_000,
      WAGGLE_AUTH_MODE: 'kubernetes',
    });
  });

  it('names every bad variable', () => {
    expect(() =>
      loadGatewayConfig({
        WAGGLE_LISTEN_ADDR: 'nope',
        WAGGLE_MAX_ENVIRONMENTS: '0',
        WAGGLE_DEFAULT_EXEC_TIMEOUT: '3 days',
      }),
    ).toThrow(
      /WAGGLE_LISTEN_ADDR="nope": use host:port[\s\S]*WAGGLE_MAX_ENVIRONMENTS="0"[\s\S]*WAGGLE_DEFAULT_EXEC_TIMEOUT="3 days": use a duration/,
    );
    expect(() => loadGatewayConfig({ WAGGLE_DEFAULT_EXEC_TIMEOUT: '10m' })).toThrow(
      /must not exceed WAGGLE_MAX_EXEC_TIMEOUT/,
    );
  });

  it('allows insecure mode on loopback only', () => {
    expect(loadGatewayConfig({ WAGGLE_AUTH_MODE: 'insecure' }).WAGGLE_AUTH_MODE).toBe('insecure');
    expect(() =>
      loadGatewayConfig({ WAGGLE_AUTH_MODE: 'insecure', WAGGLE_LISTEN_ADDR: '0.0.0.0:8080' }),
    ).toThrow(/insecure is allowed only on a loopback address/);
    expect(isLoopbackListen('[::1]:80')).toBe(true);
    expect(isLoopbackListen('10.0.0.1:80')).toBe(false);
  });
});
