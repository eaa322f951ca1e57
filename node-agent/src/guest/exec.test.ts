import { describe, expect, it } from 'vitest';
import { commandWords } from '../testing/shell-words.ts';
import {
  EXEC_DIR,
  execScript,
  killScript,
  ROOT_BIN_SELECT,
  SANDBOX_NPROC,
  SANDBOX_PATH,
  sandboxPath,
} from './exec.ts';

/** Shell words that are builtins, keywords or assignments: everything else root runs must be absolute. */
const BUILTIN = /^(?:umask|\[|echo|cd|unset|export|exit|read|if|then|else|fi|while|do|done|[A-Za-z_]+=\S*)$/;
/** Root's helpers: the toolbox's or the Debian image's, chosen by ROOT_BIN_SELECT ($WB), or absolute. */
const ROOT_HELPER = /^(?:\$WB\/[a-z]+|\/(?:usr\/)?bin\/\S+)$/;

describe('ROOT_BIN_SELECT', () => {
  it('points $WB at a root-owned directory only: the toolbox or the image /usr/bin', () => {
    expect(ROOT_BIN_SELECT).toBe('WB=/.waggle/bin; [ -x $WB/setpriv ] || WB=/usr/bin');
  });
  it.each([
    ['exec', execScript({ id: 'e', ext: 'py', bytes: 1, interpreter: 'python3' })],
    ['kill', killScript('e')],
  ])('starts the %s script, which sets WB nowhere else', (_, s) => {
    expect(s.split('\n')[0]).toBe(ROOT_BIN_SELECT);
    expect(s.match(/\bWB=/g)).toHaveLength(2);
  });
});

describe('execScript', () => {
  it('reads exactly the code bytes from stdin and runs them as the sandbox user', () => {
    const s = execScript({ id: 'exec-1', ext: 'py', bytes: 42, interpreter: 'python3' });
    expect(s).toContain('head -c 42 > "$f"');
    expect(s).toContain('setpriv --reuid=1000 --regid=1000 --clear-groups --no-new-privs');
    expect(s).toContain('python3 "$f" < /dev/null');
    expect(s).toContain('cd /home/sandbox');
  });
  it('quotes an interpreter override', () => {
    expect(execScript({ id: 'e', ext: 'py', bytes: 1, interpreter: '/opt/py 3/bin/python' })).toContain(
      '\'/opt/py 3/bin/python\' "$f"',
    );
  });
  it('runs nothing as root by name: PATH is the sandbox-writable one once exported', () => {
    const s = execScript({ id: 'exec-1', ext: 'sh', bytes: 1, interpreter: 'bash' });
    for (const word of commandWords(s)) {
      if (!BUILTIN.test(word)) expect(word, `"${word}" in\n${s}`).toMatch(ROOT_HELPER);
    }
    // The interpreter is looked up by setpriv after it dropped to the sandbox user.
    expect(s).toMatch(/\$WB\/setpriv --reuid=1000 --regid=1000 --clear-groups --no-new-privs bash "\$f"/);
  });
  it('keeps code and pid files in the root-only exec dir, never in /tmp', () => {
    const s = execScript({ id: 'exec-1', ext: 'py', bytes: 1, interpreter: 'python3' });
    expect(EXEC_DIR).toBe('/run/waggle/exec');
    expect(s).toContain(`$WB/mkdir -p -m 0711 ${EXEC_DIR}`);
    expect(s).toContain(`f=${EXEC_DIR}/exec-1.py`);
    expect(s).toContain(`echo $$ > ${EXEC_DIR}/exec-1.pid`);
    expect(s).not.toContain('/tmp');
  });
  it('keeps the pid file for the timeout kill and removes those of finished runs', () => {
    const s = execScript({ id: 'exec-2', ext: 'py', bytes: 1, interpreter: 'python3', finished: ['exec-1'] });
    expect(s).toMatch(/^\$WB\/rm -f "\$f" \/run\/waggle\/exec\/exec-1\.pid > \/dev\/null 2>&1 &$/m);
    expect(s).not.toMatch(/rm .*exec-2\.pid/);
  });
  it('limits the sandbox user’s processes before dropping privileges', () => {
    const s = execScript({ id: 'exec-1', ext: 'py', bytes: 1, interpreter: 'python3' });
    expect(s).toContain(`$WB/prlimit --nproc=${SANDBOX_NPROC}:${SANDBOX_NPROC} $WB/setpriv`);
  });
});

describe('killScript', () => {
  it('stops the whole session, then kills it, by absolute paths', () => {
    const s = killScript('exec-1');
    expect(s).toContain(`read sid < ${EXEC_DIR}/exec-1.pid`);
    expect(s.indexOf('$WB/pkill -STOP -s "$sid" --runstates R,S,D')).toBeGreaterThan(0);
    expect(s.indexOf('$WB/pkill -KILL -s "$sid"')).toBeGreaterThan(s.indexOf('-STOP'));
    expect(s).toContain(`$WB/rm -f ${EXEC_DIR}/exec-1.*`);
    for (const word of commandWords(s)) {
      if (!BUILTIN.test(word)) expect(word, `"${word}" in\n${s}`).toMatch(ROOT_HELPER);
    }
  });
});

describe('sandboxPath', () => {
  it("puts an image's PATH after the sandbox's own entries and before the system ones, as plain paths only", () => {
    expect(
      sandboxPath(['/opt/conda/bin', '/usr/local/bin', '/x;rm -rf /', '$(id)', 'relative/bin', '/a b']),
    ).toBe(
      '/home/sandbox/.venv/bin:/home/sandbox/.local/bin:/home/sandbox/node_modules/.bin:/opt/conda/bin:/usr/local/bin:/usr/bin:/bin',
    );
    expect(sandboxPath()).toBe(SANDBOX_PATH);
  });
  it('reaches the exec script as one shell word', () => {
    const s = execScript({
      id: 'e',
      ext: 'sh',
      bytes: 1,
      interpreter: '/bin/sh',
      path: sandboxPath(['/opt/x+y/bin']),
    });
    expect(s).toMatch(
      / PATH=('?)\/home\/sandbox\/\.venv\/bin:.*:\/opt\/x\+y\/bin:\/usr\/local\/bin:\/usr\/bin:\/bin\1 /,
    );
  });
});
