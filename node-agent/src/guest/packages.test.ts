import { describe, expect, it } from 'vitest';
import { commandWords } from '../testing/shell-words.ts';
import { installScript, validatePackages } from './packages.ts';

describe('validatePackages', () => {
  it.each([
    ['pip', ['pandas', 'pandas==2.2.3', 'requests[socks]>=2,<3', 'scikit-learn', 'zope.interface']],
    ['npm', ['lodash', 'lodash@4.17.21', '@types/node', '@scope/pkg@^1.2.0']],
    ['apt', ['jq', 'libxml2-dev', 'g++', 'python3.11=3.11.2-6']],
    ['apk', ['jq', 'py3-pip', 'font-noto_cjk', 'curl=8.5.0-r0', 'busybox~1.36']],
  ] as const)('accepts valid %s specifiers', (manager, pkgs) => {
    expect(validatePackages(manager, [...pkgs])).toEqual(pkgs);
  });

  it.each([
    ['pip', 'x; rm -rf /'],
    ['pip', '$(reboot)'],
    ['pip', '`id`'],
    ['pip', '--index-url=http://evil'],
    ['pip', 'git+https://example.com/x.git'],
    ['pip', '../local/path'],
    ['npm', 'lodash && curl x'],
    ['npm', 'https://example.com/x.tgz'],
    ['apt', 'jq\nreboot'],
    ['apt', 'JQ'],
    ['apk', 'jq; reboot'],
    ['apk', '--allow-untrusted'],
    ['apk', 'jq --repository=http://evil'],
    ['pip', ''],
  ] as const)('rejects %s specifier %j with a clear message', (manager, pkg) => {
    expect(() => validatePackages(manager, [pkg])).toThrow(/invalid .* package .*plain package name/);
  });

  it('rejects an empty list and too many packages', () => {
    expect(() => validatePackages('pip', [])).toThrow(/packages is empty/);
    expect(() =>
      validatePackages(
        'pip',
        Array.from({ length: 51 }, (_, i) => `p${i}`),
      ),
    ).toThrow(/at most 50/);
  });
});

describe('installScript', () => {
  it('falls back to a venv when pip reports an externally managed environment', () => {
    const s = installScript('install-1', 'pip', ['pandas']);
    expect(s).toContain('python3 -m pip install --user');
    expect(s).toContain('externally-managed-environment');
    expect(s).toContain('python3 -m venv --system-site-packages /home/sandbox/.venv');
  });
  it('runs apt and apk as root and npm as the sandbox user', () => {
    expect(installScript('i', 'apt', ['jq'])).toMatch(
      /^\/usr\/bin\/apt-get install -y -qq --no-install-recommends jq$/m,
    );
    expect(installScript('i', 'apk', ['jq'])).toMatch(/^\/sbin\/apk add --no-cache jq$/m);
    expect(installScript('i', 'npm', ['lodash'])).toMatch(
      /^\$WB\/prlimit --nproc=\d+:\d+ \$WB\/setpriv .* \$WB\/env -i .* npm install .* lodash$/m,
    );
  });
  it.each(['pip', 'npm', 'apt', 'apk'] as const)(
    '%s: root runs nothing by name and writes nothing to /tmp',
    (m) => {
      const s = installScript('install-1', m, ['x']);
      const allowed =
        /^(?:\[|echo|cd|exit|if|then|fi|case|esac|printf|export|out=.*|rc=.*|WB=\/\S+|\*.*\)|\/.*|\$WB\/[a-z]+)$/;
      for (const word of commandWords(s)) expect(word, `"${word}" in\n${s}`).toMatch(allowed);
      expect(s).toContain('echo $$ > /run/waggle/exec/install-1.pid');
      expect(s).not.toContain('/tmp');
    },
  );
});
