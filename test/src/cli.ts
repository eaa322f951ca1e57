// Waggle's developer CLI: `pnpm cluster <command>` (or `node test/src/cli.ts <command>`).
import { parseArgs } from 'node:util';
import { clusterDown, clusterStatus, clusterUp } from './cluster/local-cluster.ts';
import { ensureComponentImages } from './container-images.ts';
import { startControlPlane } from './control-plane.ts';
import { ensureHelm, HELM_VERSION, HELM3_VERSION } from './helm.ts';
import { ensureKubeBinaries, KUBE_COMPONENTS, KUBE_VERSION, type KubeComponent } from './kube-binaries.ts';

const USAGE = `usage: pnpm cluster <command>

commands:
  control-plane            start etcd + kube-apiserver ${KUBE_VERSION} on loopback; prints the
                           KUBECONFIG to use; Ctrl-C stops it and removes everything it created
  build-kube [component…]  build and cache Kubernetes binaries from Go modules
                           (default: etcd kube-apiserver kubectl; "all" for every component)
  which <component>        print the cached path of a Kubernetes binary (building it if needed)
  build-helm               build and cache helm ${HELM_VERSION} and ${HELM3_VERSION} from Go modules
  up                       bring up the local single-node cluster (idempotent; needs root)
  down                     stop it and remove everything it created on this machine
  status                   which cluster components run
  images                   build the operator, gateway and node-agent images with podman
                           (contexts in ~/.cache/waggle/build/<component>)

components: ${KUBE_COMPONENTS.join(' ')}
`;

const say = (line: string) => console.error(line);

function components(names: string[]): KubeComponent[] {
  if (names.includes('all')) return [...KUBE_COMPONENTS];
  for (const n of names) {
    if (!(KUBE_COMPONENTS as readonly string[]).includes(n)) {
      throw new Error(`unknown component "${n}"; choose from: ${KUBE_COMPONENTS.join(', ')}`);
    }
  }
  return names.length ? (names as KubeComponent[]) : ['etcd', 'kube-apiserver', 'kubectl'];
}

async function controlPlane(): Promise<void> {
  const cp = await startControlPlane({ log: say });
  console.log(
    `kube-apiserver ${cp.serverVersion} at ${cp.server} (ready in ${(cp.startupMs / 1000).toFixed(1)} s)`,
  );
  console.log(`export KUBECONFIG=${cp.kubeconfigPath}`);
  console.log(`kubectl: ${cp.binaries.kubectl}`);
  console.log('Press Ctrl-C to stop.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  say('stopping control plane');
  await cp.stop();
  say(`stopped; removed ${cp.dir}`);
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' } },
  });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return command || values.help ? 0 : 2;
  }
  switch (command) {
    case 'control-plane':
      await controlPlane();
      return 0;
    case 'build-kube': {
      const paths = await ensureKubeBinaries(components(rest), { log: say });
      for (const [name, path] of Object.entries(paths)) say(`${name}: ${path}`);
      return 0;
    }
    case 'which': {
      if (rest.length !== 1) throw new Error('usage: which <component>');
      const paths = await ensureKubeBinaries(components(rest), { log: say });
      console.log(Object.values(paths)[0]);
      return 0;
    }
    case 'build-helm': {
      for (const version of [HELM_VERSION, HELM3_VERSION])
        say(`helm ${version}: ${await ensureHelm({ version, log: say })}`);
      return 0;
    }
    case 'up': {
      const c = await clusterUp({ log: say });
      console.log(`export KUBECONFIG=${c.kubeconfigPath}`);
      return 0;
    }
    case 'images': {
      const refs = await ensureComponentImages({ log: say });
      for (const [c, ref] of Object.entries(refs)) console.log(`${c}: ${ref}`);
      return 0;
    }
    case 'down':
      await clusterDown({ log: say });
      return 0;
    case 'status': {
      const st = await clusterStatus();
      if (st.components.length === 0) console.log('no local cluster');
      for (const c of st.components)
        console.log(`${c.running ? '●' : '○'} ${c.name}${c.pid ? ` (pid ${c.pid})` : ''}`);
      return st.components.length > 0 && st.components.every((c) => c.running) ? 0 : 1;
    }
    default:
      process.stderr.write(`unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`error: ${err.message}`);
    process.exit(1);
  },
);
