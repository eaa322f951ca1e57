import { describe, expect, it } from 'vitest';
import { importSpecifiers, roleOf } from './import-graph.ts';

describe('importSpecifiers', () => {
  it('finds static, type-only, multi-line, re-exported, side-effect and dynamic imports', () => {
    const source = [
      "import 'reflect-metadata'; // polyfill",
      "import { a } from '@waggle/crds';",
      "import type { B } from '../b.ts';",
      'import {',
      '  c,',
      '  type D,',
      "} from '@waggle/node-agent/client';",
      "export * from './e.ts';",
      'export { f } from "./f.ts";',
      "const g = await import('./g.ts');",
      'const h = 1;',
    ].join('\n');
    expect(importSpecifiers(source).sort()).toEqual(
      [
        '../b.ts',
        './e.ts',
        './f.ts',
        './g.ts',
        '@waggle/crds',
        '@waggle/node-agent/client',
        'reflect-metadata',
      ].sort(),
    );
  });

  it('ignores imports quoted in comments and plain code that merely says "from"', () => {
    const source = [
      '/**',
      " * import { x } from '@waggle/operator';",
      ' */',
      "// import { y } from '../../operator/src/y.ts';",
      "const list = Array.from('abc');",
      "export const z = 'from here';",
    ].join('\n');
    expect(importSpecifiers(source)).toEqual([]);
  });
});

describe('roleOf', () => {
  it('counts only the shipped components’ src/ as production, without tests and fakes', () => {
    expect(roleOf('operator', 'src/operator.ts')).toBe('production');
    expect(roleOf('node-agent', 'src/client.ts')).toBe('production');
    expect(roleOf('operator', 'src/operator.test.ts')).toBe('development');
    expect(roleOf('node-agent', 'src/testing/fake-node-agent.ts')).toBe('development');
    expect(roleOf('node-agent', 'bench/index.ts')).toBe('development');
    expect(roleOf('mcp-gateway', 'test/real-stack.ts')).toBe('development');
    expect(roleOf('test', 'src/stack.ts')).toBe('development');
  });
});
