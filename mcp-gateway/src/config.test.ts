import { CREATE_DEADLINE_DEFAULTS, renamedVariablesSet } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { GATEWAY_RENAMED_VARIABLES, isLoopbackListen, loadGatewayConfig } from './config.ts';

describe('gateway configuration', () => {
  it('has the original Waggle defaults', () => {
    const c = loadGatewayConfig({});
    expect(c).toMatchObject({
      WAGGLE_LISTEN_ADDR: '127.0.0.1:8080',
      WAGGLE_MAX_ENVIRONMENTS: 10,
      WAGGLE_DEFAULT_TIMEOUT_MIN: 30,
      WAGGLE_DEFAULT_EXEC_TIMEOUT: 30_000,
      WAGGLE_MAX_EXEC_TIMEOUT: 300_000,
      WAGGLE_AUTH_MODE: 'kubernetes',
    });
  });

  it('leaves resources and network to the CRD defaults unless configured, within the CRD limits', () => {
    const c = loadGatewayConfig({});
    expect(c.WAGGLE_DEFAULT_CPUS).toBeUndefined();
    expect(c.WAGGLE_DEFAULT_MEMORY_MB).toBeUndefined();
    expect(c.WAGGLE_DEFAULT_NETWORK).toBeUndefined();
    expect(loadGatewayConfig({ WAGGLE_DEFAULT_CPUS: '2', WAGGLE_DEFAULT_NETWORK: 'none' })).toMatchObject({
      WAGGLE_DEFAULT_CPUS: 2,
      WAGGLE_DEFAULT_NETWORK: 'none',
    });
    expect(() => loadGatewayConfig({ WAGGLE_DEFAULT_CPUS: '9' })).toThrow(
      /WAGGLE_DEFAULT_CPUS="9": must be from 1 to 8/,
    );
    // 8 cpus need 1024 MiB; the CRD's default memory (512) is not enough.
    expect(() => loadGatewayConfig({ WAGGLE_DEFAULT_CPUS: '8' })).toThrow(
      /WAGGLE_DEFAULT_MEMORY_MB \(512\) must be at least 128 per cpu/,
    );
  });

  it('leaves the idle action to the CRD (delete) unless configured; a resume waits 60 s', () => {
    const c = loadGatewayConfig({});
    expect(c.WAGGLE_IDLE_ACTION).toBeUndefined();
    expect(c.WAGGLE_RESUME_WAIT_TIMEOUT).toBe(60_000);
    expect(
      loadGatewayConfig({ WAGGLE_IDLE_ACTION: 'suspend', WAGGLE_RESUME_WAIT_TIMEOUT: '2m' }),
    ).toMatchObject({
      WAGGLE_IDLE_ACTION: 'suspend',
      WAGGLE_RESUME_WAIT_TIMEOUT: 120_000,
    });
    expect(() => loadGatewayConfig({ WAGGLE_IDLE_ACTION: 'Hibernate' })).toThrow(
      /WAGGLE_IDLE_ACTION="Hibernate"/,
    );
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
    expect(
      loadGatewayConfig({ WAGGLE_AUTH_MODE: 'insecure', WAGGLE_LISTEN_ADDR: '[::1]:8080' })
        .WAGGLE_LISTEN_ADDR,
    ).toBe('[::1]:8080');
    expect(() => loadGatewayConfig({ WAGGLE_LISTEN_ADDR: '::1:8080' })).toThrow(
      /WAGGLE_LISTEN_ADDR="::1:8080": use host:port.*IPv6 in brackets/,
    );
    expect(isLoopbackListen('10.0.0.1:80')).toBe(false);
  });

  it('has hostile-traffic limits with consistent defaults', () => {
    expect(loadGatewayConfig({})).toMatchObject({
      WAGGLE_HEADERS_TIMEOUT: 10_000,
      WAGGLE_REQUEST_TIMEOUT: 60_000,
      WAGGLE_KEEPALIVE_TIMEOUT: 72_000,
      WAGGLE_MAX_SESSIONS: 10_000,
      WAGGLE_MAX_SESSIONS_PER_CALLER: 32,
      WAGGLE_MAX_CALLS_PER_CALLER: 32,
      WAGGLE_AUTH_NEGATIVE_CACHE_TTL: 10_000,
      WAGGLE_AUTH_FAILURES_PER_MINUTE: 30,
      WAGGLE_TOKEN_REVIEWS_PER_SECOND: 20,
    });
    expect(() => loadGatewayConfig({ WAGGLE_HEADERS_TIMEOUT: '2m' })).toThrow(
      /WAGGLE_HEADERS_TIMEOUT must not exceed WAGGLE_REQUEST_TIMEOUT/,
    );
    expect(() =>
      loadGatewayConfig({ WAGGLE_MAX_SESSIONS: '10', WAGGLE_MAX_SESSIONS_PER_CALLER: '11' }),
    ).toThrow(/WAGGLE_MAX_SESSIONS_PER_CALLER must not exceed WAGGLE_MAX_SESSIONS/);
    expect(loadGatewayConfig({ WAGGLE_TOKEN_AUDIENCES: 'waggle, other' }).WAGGLE_TOKEN_AUDIENCES).toEqual([
      'waggle',
      'other',
    ]);
  });

  it('names the create wait for what it bounds and still reads the old name', () => {
    expect(loadGatewayConfig({}).WAGGLE_CREATE_WAIT_TIMEOUT).toBe(CREATE_DEADLINE_DEFAULTS.createWaitMs);
    expect(loadGatewayConfig({ WAGGLE_CREATE_WAIT_TIMEOUT: '4m' }).WAGGLE_CREATE_WAIT_TIMEOUT).toBe(240_000);
    expect(loadGatewayConfig({ WAGGLE_CREATE_TIMEOUT: '2m' }).WAGGLE_CREATE_WAIT_TIMEOUT).toBe(120_000);
    expect(
      loadGatewayConfig({ WAGGLE_CREATE_TIMEOUT: '2m', WAGGLE_CREATE_WAIT_TIMEOUT: '4m' })
        .WAGGLE_CREATE_WAIT_TIMEOUT,
    ).toBe(240_000);
    expect(() => loadGatewayConfig({ WAGGLE_CREATE_TIMEOUT: 'soon' })).toThrow(
      /WAGGLE_CREATE_WAIT_TIMEOUT="soon" \(set as WAGGLE_CREATE_TIMEOUT\)/,
    );
    expect(renamedVariablesSet({ WAGGLE_CREATE_TIMEOUT: '2m' }, GATEWAY_RENAMED_VARIABLES)).toEqual([
      { old: 'WAGGLE_CREATE_TIMEOUT', current: 'WAGGLE_CREATE_WAIT_TIMEOUT' },
    ]);
  });
});
