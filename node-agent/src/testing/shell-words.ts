/**
 * The first word of every simple command in a generated guest script (for tests asserting that
 * root runs nothing by name). Quoted strings and command substitutions are blanked first; good
 * enough for the agent's own scripts, not a shell parser.
 */
export function commandWords(script: string): string[] {
  return script
    .replace(/'[^']*'/g, "''")
    .replace(/"[^"]*"/g, '""')
    .replace(/\$\([^)]*\)/g, '$x')
    .replace(/\d*>&\d+/g, '')
    .split(/\n|&&|\|\||;|\||&|\b(?:if|while|then|do|else)\b/)
    .map((part) => part.trim().split(/\s+/)[0] ?? '')
    .filter((w) => w !== '' && !w.startsWith('>') && !w.startsWith('<'));
}
