import { describe, expect, it } from 'vitest';
import {
  HOST_PORT_PATTERN,
  hostPortSchema,
  InvalidHostPortError,
  LOG_LEVELS,
  logLevelSchema,
  parseHostPort,
  tryParseHostPort,
} from './vocabulary.ts';

describe('host:port listen addresses', () => {
  it.each([
    ['127.0.0.1:7443', '127.0.0.1', 7443],
    ['0.0.0.0:0', '0.0.0.0', 0],
    ['localhost:8080', 'localhost', 8080],
    ['node-1.example.org:65535', 'node-1.example.org', 65_535],
    ['[::1]:7443', '::1', 7443],
    ['[::]:8080', '::', 8080],
    ['[2001:db8::10]:443', '2001:db8::10', 443],
    ['[::ffff:192.0.2.1]:80', '::ffff:192.0.2.1', 80],
  ])('accepts %s', (address, host, port) => {
    expect(parseHostPort(address)).toEqual({ host, port });
    expect(hostPortSchema.safeParse(address).success).toBe(true);
  });

  it.each([
    'nope',
    '127.0.0.1',
    ':8080',
    '127.0.0.1:',
    '127.0.0.1:65536',
    '127.0.0.1:123456',
    '::1:7443', // IPv6 needs brackets: which colon starts the port?
    '[::1]', // no port
    '[::1:7443',
    '[not:an:address]:80',
    '[1::2::3]:80',
    '256.1.1.1:80',
    '1.2.3:80',
    'host name:80',
    'http://host:80',
    '-host:80',
  ])('refuses %s', (address) => {
    expect(tryParseHostPort(address)).toBeUndefined();
    expect(hostPortSchema.safeParse(address).success).toBe(false);
    expect(() => parseHostPort(address)).toThrow(InvalidHostPortError);
  });

  it('keeps the brackets out of the pattern match of an IPv6 host', () => {
    expect(HOST_PORT_PATTERN.exec('[::1]:7443')?.groups).toMatchObject({ ipv6: '::1', port: '7443' });
  });

  it('explains the form, IPv6 included, when refused', () => {
    const r = hostPortSchema.safeParse('::1:7443');
    expect(r.error?.issues[0]?.message).toMatch(/host:port.*\[::1\]/);
  });
});

describe('log levels', () => {
  it("are pino's, info when unset", () => {
    expect(LOG_LEVELS).toEqual(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
    expect(logLevelSchema.parse(undefined)).toBe('info');
    expect(logLevelSchema.safeParse('verbose').success).toBe(false);
  });
});
