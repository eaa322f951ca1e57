import { describe, expect, it } from 'vitest';
import { execScript } from './exec.ts';

describe('execScript', () => {
  it('reads exactly the code bytes from stdin and runs them as the sandbox user', () => {
    const s = execScript({ id: 'exec-1', ext: 'py', bytes: 42, interpreter: 'python3' });
    expect(s).toContain('head -c 42 > "$f"');
    expect(s).toContain('setpriv --reuid=1000 --regid=1000 --init-groups');
    expect(s).toContain('python3 "$f" < /dev/null');
    expect(s).toContain('cd /home/sandbox');
  });
  it('quotes an interpreter override', () => {
    expect(execScript({ id: 'e', ext: 'py', bytes: 1, interpreter: '/opt/py 3/bin/python' })).toContain(
      '\'/opt/py 3/bin/python\' "$f"',
    );
  });
});
