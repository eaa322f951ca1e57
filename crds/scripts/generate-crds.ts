// Writes (or with --check, verifies) the CRD YAML generated from the zod schemas.
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allCRDs, renderCRD } from '../src/index.ts';

const crdsDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
let drift = 0;

for (const [file, crd] of Object.entries(allCRDs())) {
  const path = join(crdsDir, file);
  const want = renderCRD(crd);
  if (check) {
    const have = await readFile(path, 'utf8').catch(() => '');
    if (have !== want) {
      drift++;
      console.error(`crds/${file} is out of date with crds/src; run \`pnpm gen:crds\``);
    }
  } else {
    await writeFile(path, want);
    console.log(`wrote crds/${file}`);
  }
}
process.exit(drift ? 1 : 0);
