// The kind cluster config the docs hand out (docs/kind-config.yaml, and any kind config in a
// Markdown file) goes through kind's own create code path: sigs.k8s.io/kind v0.33 loads it
// strictly, defaults and validates it, plans the node containers and writes each node's kubeadm
// configuration — against a stand-in container runtime, since there is no container engine
// here (test/kind-config-check/main.go). The first run builds the checker (~20 s with a warm
// Go build cache, cached in ~/.cache/waggle/tools/).
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { buildKindConfigCheck, checkKindConfig, type KindNode } from '../src/kind-config-check.ts';

const REPO = join(import.meta.dirname, '..', '..');
const KIND_CONFIG = join(REPO, 'docs', 'kind-config.yaml');

let checker = '';
beforeAll(async () => {
  checker = await buildKindConfigCheck();
}, 600_000);

async function checkText(name: string, text: string) {
  const path = join(tmpdir(), `waggle-kind-${process.pid}-${name}.yaml`);
  await writeFile(path, text);
  return checkKindConfig(checker, path);
}

/** The node labels kind passes to a node's kubelet (its kubeadm JoinConfiguration). */
function kubeletLabels(node: KindNode): Record<string, string> {
  for (const doc of parseAllDocuments(node.kubeadmConfig)) {
    const d = doc.toJSON() as {
      kind?: string;
      nodeRegistration?: { kubeletExtraArgs?: Record<string, string> | { name: string; value: string }[] };
    };
    if (d?.kind !== 'JoinConfiguration') continue;
    const args = d.nodeRegistration?.kubeletExtraArgs ?? {};
    const raw = Array.isArray(args) ? args.find((a) => a.name === 'node-labels')?.value : args['node-labels'];
    return Object.fromEntries(
      (raw ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => kv.split('=', 2) as [string, string]),
    );
  }
  throw new Error(`no kubeadm JoinConfiguration written for ${node.name}`);
}

/** The host paths kind bind-mounts into a node container (`--volume=<host>:<container>[:opts]`). */
function mounts(node: KindNode): string[] {
  const out: string[] = [];
  node.runArgs.forEach((a, i) => {
    if (a.startsWith('--volume=')) out.push(a.slice('--volume='.length));
    else if (a === '--volume') out.push(node.runArgs[i + 1] ?? '');
  });
  return out;
}

describe('the kind cluster config (docs/kind-config.yaml)', () => {
  it('is accepted by kind and gives VM nodes /dev/kvm and the node-agent’s node selector', async () => {
    const result = await checkKindConfig(checker, KIND_CONFIG);
    if (!result.accepted) throw new Error(`kind refused docs/kind-config.yaml: ${result.error}`);
    expect(result.nodes.filter((n) => n.role === 'control-plane')).toHaveLength(1);

    const values = parse(await readFile(join(REPO, 'charts', 'waggle', 'values.yaml'), 'utf8')) as {
      nodeAgent: { nodeSelector: Record<string, string> };
    };
    const selector = values.nodeAgent.nodeSelector;
    expect(Object.keys(selector).length).toBeGreaterThan(0);
    const vmNodes = result.nodes.filter((n) =>
      Object.entries(selector).every(([k, v]) => kubeletLabels(n)[k] === v),
    );
    expect(vmNodes.map((n) => n.role)).toEqual(['worker', 'worker']);
    for (const n of vmNodes) {
      expect(mounts(n), n.name).toContain('/dev/kvm:/dev/kvm');
      expect(n.runArgs, n.name).toContain('--privileged');
    }
  });

  it('the config the chart README carried before is refused (no control-plane node)', async () => {
    const result = await checkText(
      'old',
      [
        'kind: Cluster',
        'apiVersion: kind.x-k8s.io/v1alpha4',
        'nodes:',
        '  - role: worker',
        '    labels: { waggle.dev/kvm-capable: "true" }',
        '    extraMounts:',
        '      - { hostPath: /dev/kvm, containerPath: /dev/kvm }',
        '',
      ].join('\n'),
    );
    expect(result).toEqual({ accepted: false, error: 'must have at least one control-plane node' });
  });

  it('an unknown field is refused (kind loads configs strictly)', async () => {
    const text = (await readFile(KIND_CONFIG, 'utf8')).replace('extraMounts:', 'extraMount:');
    const result = await checkText('typo', text);
    expect(result.accepted).toBe(false);
    expect(result.accepted === false && result.error).toMatch(/extraMount/);
  });

  it('every kind config in the Markdown docs is accepted too', async () => {
    const files = [
      'README.md',
      'charts/waggle/README.md',
      ...(await readdir(join(REPO, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
    ];
    let n = 0;
    for (const file of files) {
      const text = await readFile(join(REPO, file), 'utf8');
      for (const [, block] of text.matchAll(/```ya?ml\n([\s\S]*?)```/g)) {
        if (!/^kind: Cluster$/m.test(block ?? '') || !block?.includes('kind.x-k8s.io')) continue;
        const result = await checkText(`md-${n++}`, block);
        expect(result.accepted ? '' : `${file}: ${result.error}`).toBe('');
      }
    }
  });
});
