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

  it('takes runtime, image, resources, network and idle timeout from a template over the gateway defaults', () => {
    const template = {
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleTemplate',
      metadata: { name: 'ds' },
      spec: {
        runtime: 'python',
        image: 'registry.example.com/t/ds:1',
        resources: { cpus: 2, memoryMiB: 2048, diskMiB: 4096 },
        network: { egress: 'none', allowDomains: [] },
        idleTimeout: '45m',
      },
    } as const;
    const gw = { ...defaults, cpus: 1, memoryMiB: 512, network: 'internet' as const };
    const spec = newEnvironmentSpec({ runtime: 'shell', template: structuredClone(template) as never }, gw);
    expect(spec).toMatchObject({
      runtime: 'python',
      image: 'registry.example.com/t/ds:1',
      template: 'ds',
      resources: { cpus: 2, memoryMiB: 2048, diskMiB: 4096 },
      network: { egress: 'none', allowDomains: [] },
      idleTimeout: '45m',
    });
    // The caller's own network and timeout still win.
    const mine = newEnvironmentSpec(
      {
        runtime: 'python',
        template: structuredClone(template) as never,
        network: 'internet',
        timeoutMinutes: 5,
      },
      gw,
    );
    expect(mine).toMatchObject({ network: { egress: 'all' }, idleTimeout: '5m' });
    // A template's idle timeout beyond the gateway's maximum lifetime (24h here) is cut to it.
    const long = structuredClone(template) as { spec: { idleTimeout: string } };
    long.spec.idleTimeout = '72h';
    expect(newEnvironmentSpec({ runtime: 'python', template: long as never }, gw).idleTimeout).toBe('24h');
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
