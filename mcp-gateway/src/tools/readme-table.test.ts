// The tool tables in the root README and in mcp-gateway/README.md name exactly the tools the
// gateway registers (buildTools), each once.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildTools, type ToolDeps } from './index.ts';

const REPO = join(import.meta.dirname, '..', '..', '..');

const deps: ToolDeps = {
  environments: { maxTimeoutMinutes: () => 1440 } as unknown as ToolDeps['environments'],
  sandbox: {} as ToolDeps['sandbox'],
  previews: {} as ToolDeps['previews'],
  templates: {} as ToolDeps['templates'],
  limits: {
    defaultExecTimeoutMs: 30_000,
    maxExecTimeoutMs: 300_000,
    installTimeoutMs: 600_000,
    maxFileBytes: 10 * 1024 * 1024,
    maxOutputBytes: 1024 * 1024,
    defaultIdleTimeoutMinutes: 30,
    defaultNetwork: 'internet',
    defaultIdleAction: 'delete',
  },
};
const registered = buildTools(deps).map((t) => t.name);

/** The first-column `names` of the table in the section under `heading`. */
function tableTools(markdown: string, heading: string): string[] {
  const start = markdown.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`no "${heading}" section`);
  const rest = markdown.slice(start + heading.length + 2);
  const end = rest.search(/^#{1,2} /m);
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/^\|\s*`([a-z_]+)`\s*\|/gm)].map((m) => m[1] as string);
}

describe('the README tool tables', () => {
  it('the gateway registers tools', () => {
    expect(registered.length).toBeGreaterThan(10);
    expect(new Set(registered).size).toBe(registered.length);
  });

  it.each([
    ['README.md', '## MCP tools'],
    ['mcp-gateway/README.md', '## Tools'],
  ])('%s (%s) lists exactly the registered tools', (file, heading) => {
    const listed = tableTools(readFileSync(join(REPO, file), 'utf8'), heading);
    expect(listed.length, 'a tool listed twice').toBe(new Set(listed).size);
    expect([...listed].sort()).toEqual([...registered].sort());
  });

  it('a table missing a tool or naming another fails', () => {
    const table = (names: string[]) =>
      `\n## MCP tools\n\n| tool | what |\n| --- | --- |\n${names.map((n) => `| \`${n}\` | x |`).join('\n')}\n\n## Next\n`;
    expect(tableTools(table(registered.slice(1)), '## MCP tools').sort()).not.toEqual([...registered].sort());
    expect(tableTools(table([...registered, 'run_code']), '## MCP tools').sort()).not.toEqual(
      [...registered].sort(),
    );
    expect(tableTools(table(registered), '## MCP tools').sort()).toEqual([...registered].sort());
  });
});
