import { describe, expect, it } from 'vitest';
import { egressFor, idleActionChoiceOf, networkChoiceOf, newEnvironmentSpec } from './environment-spec.ts';

const defaults = { idleTimeoutMinutes: 30, maxLifetimeMs: 86_400_000 };

describe('newEnvironmentSpec', () => {
  it('leaves resources and network to the CRD defaults when nobody chose them', () => {
    const spec = newEnvironmentSpec({ runtime: 'python' }, defaults);
    expect(spec).toEqual({ runtime: 'python', idleTimeout: '30m', maxLifetime: '24h' });
    expect(spec).not.toHaveProperty('resources');
    expect(spec).not.toHaveProperty('network');
  });

  it('sets what the gateway is configured to set, and never the disk', () => {
    const spec = newEnvironmentSpec(
      { runtime: 'node' },
      { ...defaults, cpus: 2, memoryMiB: 1024, network: 'none' },
    );
    expect(spec.resources).toEqual({ cpus: 2, memoryMiB: 1024 });
    expect(spec.network).toEqual({ egress: 'none' });
    expect(newEnvironmentSpec({ runtime: 'node' }, { ...defaults, cpus: 2 }).resources).toEqual({ cpus: 2 });
  });

  it("puts the caller's choices over the configured ones", () => {
    const spec = newEnvironmentSpec(
      {
        runtime: 'shell',
        name: 'build',
        timeoutMinutes: 15,
        network: 'internet',
        allowDomains: ['pypi.org'],
      },
      { ...defaults, network: 'none' },
    );
    expect(spec).toMatchObject({
      displayName: 'build',
      idleTimeout: '15m',
      network: { egress: 'all', allowDomains: ['pypi.org'] },
    });
  });

  it('sends allowDomains alone when no mode was chosen (the default mode is the internet)', () => {
    expect(newEnvironmentSpec({ runtime: 'python', allowDomains: ['pypi.org'] }, defaults).network).toEqual({
      allowDomains: ['pypi.org'],
    });
  });
});

describe('idle action', () => {
  it('is set only when the caller or the configuration chose it, in the CRD words', () => {
    expect(newEnvironmentSpec({ runtime: 'python' }, defaults)).not.toHaveProperty('idleAction');
    expect(newEnvironmentSpec({ runtime: 'python' }, { ...defaults, idleAction: 'suspend' })).toMatchObject({
      idleAction: 'Suspend',
      maxLifetime: '24h', // Suspend needs one (a CEL rule)
    });
    expect(
      newEnvironmentSpec({ runtime: 'python', idleAction: 'delete' }, { ...defaults, idleAction: 'suspend' })
        .idleAction,
    ).toBe('Delete');
    expect(idleActionChoiceOf(undefined)).toBe('delete');
    expect(idleActionChoiceOf('Suspend')).toBe('suspend');
  });
});

describe('network choice', () => {
  it('is the egress mode in the words create_environment uses', () => {
    expect(egressFor('internet')).toBe('all');
    expect(egressFor('none')).toBe('none');
    expect(networkChoiceOf('all')).toBe('internet');
    expect(networkChoiceOf('none')).toBe('none');
  });
});
