// The Helm chart before it is installed: lint, the generated CRDs, schema errors naming the field,
// Helm 3 rendering the same objects, local values.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ensureHelm, HELM3_VERSION } from '../src/helm.ts';
import { CHART, helmRun, localChartValues, RELEASE } from '../src/stack.ts';
import { NS, REPO, run, stack, startWithoutWaggle } from './fixture.ts';

startWithoutWaggle();

describe('the Helm chart rendered for the real node', () => {
  it('passes helm lint and ships the generated CRDs unchanged', async () => {
    expect(await helmRun(stack, ['lint', CHART])).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    for (const f of [
      'waggle.dev_waggleenvironments.yaml',
      'waggle.dev_wagglenodes.yaml',
      'waggle.dev_wagglepools.yaml',
      'waggle.dev_waggletemplates.yaml',
    ]) {
      expect(
        await readFile(join(CHART, 'crds', f), 'utf8'),
        `charts/waggle/crds/${f} is stale: cp crds/${f} charts/waggle/crds/`,
      ).toBe(await readFile(join(REPO, 'crds', f), 'utf8'));
    }
  });

  it('rejects bad values with messages that name the field', async () => {
    const bad: Array<[string[], RegExp]> = [
      [['--set', 'operator.replicas=0'], /operator\.replicas.*minimum.*1|operator\/replicas.*1/s],
      [['--set', 'nodeAgent.runtimes={ruby}'], /nodeAgent\.runtimes\.0|nodeAgent\/runtimes\/0/],
      [
        ['--set', 'gateway.defaultExecTimeout=soon'],
        /gateway\.defaultExecTimeout|gateway\/defaultExecTimeout/,
      ],
      [
        [
          '--set',
          'gateway.apiKeys.keys[0].name=x',
          '--set',
          'gateway.apiKeys.keys[0].namespace=Bad_NS',
          '--set',
          'gateway.apiKeys.keys[0].key=k',
        ],
        /namespace/,
      ],
      [['--set', 'nodeAgent.accelerator=fast'], /nodeAgent\.accelerator|nodeAgent\/accelerator/],
      [['--set', 'operator.replicaz=2'], /replicaz/],
    ];
    for (const [args, expected] of bad) {
      const err = await helmRun(stack, ['template', RELEASE, CHART, ...args]).then(
        () => 'accepted',
        (e: Error) => e.message,
      );
      expect(err, args.join(' ')).toMatch(/values don't meet the specifications of the schema/);
      expect(err, args.join(' ')).toMatch(expected);
    }
  });

  it('renders the three create timeouts under their own names and refuses values that break their nesting', async () => {
    const rendered = await helmRun(stack, [
      'template',
      RELEASE,
      CHART,
      '--set',
      'nodeAgent.bootTimeout=100s',
      '--set',
      'operator.createVMTimeout=4m',
      '--set',
      'gateway.createWaitTimeout=150s',
    ]);
    const envOf = (name: string) => new RegExp(`name: ${name}, value: "?([^" }]+)`).exec(rendered)?.[1];
    expect([
      envOf('WAGGLE_BOOT_TIMEOUT'),
      envOf('WAGGLE_CREATE_VM_TIMEOUT'),
      envOf('WAGGLE_CREATE_WAIT_TIMEOUT'),
    ]).toEqual(['100s', '4m', '150s']);
    expect(rendered).not.toMatch(/WAGGLE_CREATE_TIMEOUT\b/); // the deprecated name is only read, never set
    const refused = async (args: string[]) =>
      helmRun(stack, ['template', RELEASE, CHART, ...args]).then(
        () => 'accepted',
        (e: Error) => e.message,
      );
    expect(await refused(['--set', 'nodeAgent.bootTimeout=1h'])).toMatch(
      /nodeAgent\.bootTimeout \(1h\) must be shorter than operator\.createVMTimeout/,
    );
    expect(
      await refused(['--set', 'nodeAgent.bootTimeout=200s', '--set', 'operator.createVMTimeout=10m']),
    ).toMatch(/nodeAgent\.bootTimeout \(200s\) must be shorter than gateway\.createWaitTimeout/);
  });

  it('works with Helm 3 as well: lint, the same objects, schema errors, a server dry-run', async () => {
    const helm3 = await ensureHelm({ version: HELM3_VERSION });
    const h3 = (args: string[]) =>
      run(helm3, args, {
        env: { ...process.env, KUBECONFIG: stack.cluster.kubeconfigPath },
        maxBuffer: 32 << 20,
      }).then(
        (r) => r.stdout,
        (e: { stderr?: string; message: string }) => {
          throw new Error(`helm ${HELM3_VERSION} ${args[0]} failed: ${e.stderr || e.message}`);
        },
      );
    expect(await h3(['version', '--short'])).toMatch(/^v3\./);
    expect(await h3(['lint', CHART])).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);

    const objects = (manifest: string) =>
      parseAllDocuments(manifest)
        .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string } } | null)
        .filter((o) => o?.kind)
        .map((o) => `${o?.kind}/${o?.metadata?.name}`)
        .sort();
    const values = localChartValues(stack);
    const rendered3 = objects(await h3(['template', RELEASE, CHART, '-n', NS, ...values]));
    const rendered4 = objects(await helmRun(stack, ['template', RELEASE, CHART, '-n', NS, ...values]));
    expect(rendered3).toEqual(rendered4);
    expect(rendered3).toEqual(
      expect.arrayContaining([`Deployment/${RELEASE}-operator`, `DaemonSet/${RELEASE}-node-agent`]),
    );

    // Helm 3 validates values.schema.json with another JSON Schema library (draft 7).
    const refused = await h3(['template', RELEASE, CHART, '--set', 'operator.replicas=0']).then(
      () => 'accepted',
      (e: Error) => e.message,
    );
    expect(refused).toMatch(/values don't meet the specifications of the schema/);
    expect(refused).toMatch(/operator.*replicas/s);

    // Against the live apiserver (capabilities, lookup) without changing anything.
    expect(await h3(['install', `${RELEASE}-helm3`, CHART, '-n', NS, '--dry-run=server', ...values])).toMatch(
      /STATUS: pending-install/,
    );
    expect(await h3(['list', '-A', '-q'])).not.toMatch(/helm3/);
  });

  it('renders the local values even when a content-hash tag is all digits', async () => {
    // A 12-hex-digit hash is all decimal digits about once in 280 builds; `--set` would make it a
    // number and the schema would refuse the install (this broke CI once).
    const digits = {
      ...stack,
      images: { ...stack.images, 'node-agent': 'localhost/waggle/node-agent:176362492599' },
    };
    const out = await helmRun(stack, ['template', RELEASE, CHART, ...localChartValues(digits)]);
    expect(out).toContain('image: localhost/waggle/node-agent:176362492599');
  });
});
