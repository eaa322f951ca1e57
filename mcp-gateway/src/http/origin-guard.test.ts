import { describe, expect, it } from 'vitest';
import { checkOrigin, makeOriginPolicy } from './origin-guard.ts';

describe('origin guard', () => {
  const loopback = makeOriginPolicy({ loopback: true });
  it('lets a loopback gateway answer loopback hosts and local browser origins only', () => {
    expect(checkOrigin(loopback, { host: '127.0.0.1:8080' })).toBeUndefined();
    expect(
      checkOrigin(loopback, { host: 'localhost:8080', origin: 'http://localhost:6274' }),
    ).toBeUndefined();
    expect(checkOrigin(loopback, { host: '[::1]:8080' })).toBeUndefined();
    expect(checkOrigin(loopback, { host: 'evil.example:8080' })).toMatch(
      /Host "evil.example:8080" is not allowed/,
    );
    expect(checkOrigin(loopback, { host: '127.0.0.1:8080', origin: 'http://evil.example' })).toMatch(
      /Origin "http:\/\/evil.example" is not allowed/,
    );
    expect(checkOrigin(loopback, { host: '127.0.0.1:8080', origin: 'null' })).toMatch(/not allowed/);
  });

  it('uses the configured lists in a cluster', () => {
    const p = makeOriginPolicy({
      loopback: false,
      allowedHosts: ['waggle-mcp.waggle-system.svc'],
      allowedOrigins: ['https://console.example.com/'],
    });
    expect(checkOrigin(p, { host: 'waggle-mcp.waggle-system.svc:8080' })).toBeUndefined();
    expect(checkOrigin(p, { host: 'other.svc' })).toMatch(/not allowed/);
    expect(
      checkOrigin(p, { host: 'waggle-mcp.waggle-system.svc', origin: 'https://console.example.com' }),
    ).toBeUndefined();
    expect(checkOrigin(p, { host: 'waggle-mcp.waggle-system.svc', origin: 'http://localhost' })).toMatch(
      /not allowed/,
    );
  });

  it('accepts any Host off loopback when no list is configured, but still checks Origin', () => {
    const p = makeOriginPolicy({ loopback: false });
    expect(checkOrigin(p, { host: 'anything:8080' })).toBeUndefined();
    expect(checkOrigin(p, { host: 'anything', origin: 'https://evil.example' })).toMatch(/not allowed/);
  });
});
