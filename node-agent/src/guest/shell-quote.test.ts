import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { shellJoin, shellQuote } from './shell-quote.ts';

describe('shellQuote', () => {
  it.each(['x; rm -rf /', '$(reboot)', '`id`', "it's", 'a b\nc', '"quoted"', '\\', '*', '', '-n'])(
    'makes %j one literal word for a real sh',
    (arg) => {
      const out = execFileSync('sh', ['-c', `printf '%s' ${shellQuote(arg)}`]).toString();
      expect(out).toBe(arg);
    },
  );
  it('leaves safe words alone and refuses NUL', () => {
    expect(shellJoin(['ls', '-la', '/home/sandbox'])).toBe('ls -la /home/sandbox');
    expect(() => shellQuote('a\0b')).toThrow(/NUL/);
  });
});
