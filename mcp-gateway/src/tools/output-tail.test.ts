import { describe, expect, it } from 'vitest';
import { OutputTail } from './output-tail.ts';

const b = (s: string) => new TextEncoder().encode(s);

describe('OutputTail', () => {
  it('keeps the last non-empty line, including one not yet ended', () => {
    const t = new OutputTail();
    t.push(b('Collecting pandas\nDownloading '));
    expect(t.line).toBe('Downloading');
    t.push(b('pandas-2.2.3.whl (13 MB)\n\n'));
    expect(t.line).toBe('Downloading pandas-2.2.3.whl (13 MB)');
  });

  it('strips terminal escapes, handles carriage-return progress bars and split UTF-8', () => {
    const t = new OutputTail(20);
    t.push(b('\u001b[32m 10%\r 50%\r'));
    expect(t.line).toBe('50%');
    const euro = b('€ done\n');
    t.push(euro.subarray(0, 2));
    t.push(euro.subarray(2));
    expect(t.line).toBe('€ done');
    t.push(b(`${'x'.repeat(100)}\n`));
    expect(t.line).toBe('x'.repeat(20));
  });
});
