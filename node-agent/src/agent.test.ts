import { describe, expect, it } from 'vitest';
import { capStreamedOutput } from './agent.ts';

describe('capStreamedOutput', () => {
  it('streams at most the limit per stream, cutting the chunk that crosses it, then nothing', () => {
    const got: Array<[string, string]> = [];
    const cap = capStreamedOutput((s, c) => got.push([s, c.toString()]), 5);
    cap('stdout', Buffer.from('abc'));
    cap('stdout', Buffer.from('defgh'));
    cap('stdout', Buffer.from('never'));
    cap('stderr', Buffer.from('12345678'));
    expect(got).toEqual([
      ['stdout', 'abc'],
      ['stdout', 'de'],
      ['stderr', '12345'],
    ]);
  });
});
