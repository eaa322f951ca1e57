import { access } from 'node:fs/promises';

/** One finding of `pnpm waggle doctor`: `true` fine, `'warn'` works but worse, `false` must be fixed. */
export interface Check {
  ok: boolean | 'warn';
  what: string;
  detail: string;
}

const MARK = { true: '✓', warn: '!', false: '✗' } as const;

/** One line per check, `✓ what: detail`. */
export const renderCheck = (c: Check): string =>
  `${MARK[String(c.ok) as keyof typeof MARK]} ${c.what}${c.detail ? `: ${c.detail}` : ''}`;

export const failures = (checks: readonly Check[]): number => checks.filter((c) => c.ok === false).length;

export const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );
