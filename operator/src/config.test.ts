import { CREATE_DEADLINE_DEFAULTS, renamedVariablesSet } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { loadOperatorConfig, OPERATOR_RENAMED_VARIABLES } from './config.ts';

describe('operator configuration', () => {
  it('has working defaults', () => {
    const c = loadOperatorConfig({});
    expect(c.WAGGLE_ORPHAN_VM_CHECK_INTERVAL).toBe(60_000);
    expect(c.WAGGLE_AGENT_CERT_VALIDITY).toBe(86_400_000);
    expect(c.WAGGLE_AGENT_CERT_SECRETS).toBeUndefined();
    expect(c.LOG_LEVEL).toBe('info');
  });

  it('takes an IPv6 ops address in brackets and refuses one without', () => {
    expect(loadOperatorConfig({ WAGGLE_OPERATOR_OPS_LISTEN: '[::]:8081' }).WAGGLE_OPERATOR_OPS_LISTEN).toBe(
      '[::]:8081',
    );
    expect(() => loadOperatorConfig({ WAGGLE_OPERATOR_OPS_LISTEN: ':::8081' })).toThrow(
      /WAGGLE_OPERATOR_OPS_LISTEN=":::8081": use host:port/,
    );
    expect(() => loadOperatorConfig({ LOG_LEVEL: 'verbose' })).toThrow(/LOG_LEVEL="verbose"/);
  });

  it('parses the certificate Secrets to keep renewed', () => {
    const c = loadOperatorConfig({
      WAGGLE_AGENT_CA_SECRET: 'waggle-agent-ca',
      WAGGLE_AGENT_CERT_SECRETS:
        'waggle-node-agent-tls:waggle-node-agent:waggle-node-agent, waggle-gateway-agent-client-tls:waggle-gateway',
      WAGGLE_AGENT_CERT_VALIDITY: '12h',
    });
    expect(c.WAGGLE_AGENT_CERT_SECRETS).toEqual([
      {
        secret: 'waggle-node-agent-tls',
        spec: { cn: 'waggle-node-agent', dnsNames: ['waggle-node-agent'], usage: 'both' },
      },
      { secret: 'waggle-gateway-agent-client-tls', spec: { cn: 'waggle-gateway', usage: 'client' } },
    ]);
    expect(c.WAGGLE_AGENT_CERT_VALIDITY).toBe(12 * 3_600_000);
  });

  it('says what is wrong with bad rotation settings', () => {
    expect(() =>
      loadOperatorConfig({
        WAGGLE_AGENT_CERT_SECRETS: 'a:b',
        WAGGLE_AGENT_CA_SECRET: 'ca',
        WAGGLE_AGENT_CERT_VALIDITY: '1m',
      }),
    ).toThrow(/WAGGLE_AGENT_CERT_VALIDITY="1m": must be at least 10m/);
    expect(() =>
      loadOperatorConfig({ WAGGLE_AGENT_CERT_SECRETS: 'no-colon', WAGGLE_AGENT_CA_SECRET: 'ca' }),
    ).toThrow(/WAGGLE_AGENT_CERT_SECRETS="no-colon": use secret:commonName\[:dnsName\]/);
    expect(() => loadOperatorConfig({ WAGGLE_AGENT_CERT_SECRETS: 'a:b' })).toThrow(/go together/);
  });

  it('names the CreateVM deadline for what it bounds and still reads the old name', () => {
    expect(loadOperatorConfig({}).WAGGLE_CREATE_VM_TIMEOUT).toBe(CREATE_DEADLINE_DEFAULTS.createVMMs);
    expect(loadOperatorConfig({ WAGGLE_CREATE_VM_TIMEOUT: '8m' }).WAGGLE_CREATE_VM_TIMEOUT).toBe(480_000);
    expect(loadOperatorConfig({ WAGGLE_CREATE_TIMEOUT: '6m' }).WAGGLE_CREATE_VM_TIMEOUT).toBe(360_000);
    expect(
      loadOperatorConfig({ WAGGLE_CREATE_TIMEOUT: '6m', WAGGLE_CREATE_VM_TIMEOUT: '8m' })
        .WAGGLE_CREATE_VM_TIMEOUT,
    ).toBe(480_000);
    expect(() => loadOperatorConfig({ WAGGLE_CREATE_TIMEOUT: '10ms' })).toThrow(
      /WAGGLE_CREATE_VM_TIMEOUT="10ms" \(set as WAGGLE_CREATE_TIMEOUT\): must be at least 1s/,
    );
    expect(renamedVariablesSet({ WAGGLE_CREATE_TIMEOUT: '6m' }, OPERATOR_RENAMED_VARIABLES)).toEqual([
      { old: 'WAGGLE_CREATE_TIMEOUT', current: 'WAGGLE_CREATE_VM_TIMEOUT' },
    ]);
  });
});
