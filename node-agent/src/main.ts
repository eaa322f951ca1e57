// node-agent entry point: all wiring lives here.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { Runtime } from '@waggle/crds';
import { Agent } from './agent.ts';
import { type AgentTls, type AgentTlsSource, watchAgentTls } from './client.ts';
import { ConfigError, loadConfig } from './config.ts';
import { resolveGuestImages, resolveGuestToolbox } from './guest-images.ts';
import { ImageError } from './images/image-errors.ts';
import { OciImageStore } from './images/oci-image-store.ts';
import { createLogger, EnvIds } from './logger.ts';
import { createMetrics } from './metrics.ts';
import { ServingCertificate } from './pki/serving-certificate.ts';
import { NodeRegistrar } from './registration.ts';
import { startServers } from './server.ts';
import { readVersion } from './version.ts';
import { detectAccelerator } from './vm/accelerator.ts';
import { readHostTscKHz } from './vm/host-tsc.ts';
import { nodeResolvers } from './vm/network/dns-forwarder.ts';
import { VMNetworks } from './vm/network/vm-network.ts';
import { VMManager } from './vm/vm-manager.ts';

const version = readVersion();

function kubeConfigIfAny(mode: 'auto' | 'true' | 'false'): KubeConfig | undefined {
  if (mode === 'false') return undefined;
  const inCluster = existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token');
  if (mode === 'auto' && !process.env.KUBECONFIG && !inCluster) return undefined;
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}

async function main(): Promise<void> {
  const config = loadConfig();
  const envIds = new EnvIds();
  const log = createLogger({ level: config.LOG_LEVEL, envIds });
  const node = config.WAGGLE_NODE_NAME;
  log.info({ node, version: version.version }, 'node-agent starting');

  const imageCacheDir = config.WAGGLE_IMAGE_CACHE_DIR ?? join(config.WAGGLE_STATE_DIR, 'images');
  // Built-in runtime images given as OCI references: their own cache beside the callers' one,
  // never collected (adopted VMs may run on an older one), no toolbox (they bring their init).
  const builtInImages = new OciImageStore({
    cacheDir: `${imageCacheDir}-builtin`,
    maxCacheBytes: Number.MAX_SAFE_INTEGER,
    maxImageBytes: config.WAGGLE_IMAGE_MAX_MIB * 2 ** 20,
    allowList: ['*'], // the admin's own configuration, not a caller's choice
    insecureRegistries: config.WAGGLE_IMAGE_INSECURE_REGISTRIES,
    inUse: () => [],
    rememberReferences: true,
    log,
  });
  const images = await resolveGuestImages({
    runtimes: config.WAGGLE_GUEST_RUNTIMES,
    pull: async (reference, runtime) => {
      try {
        return (await builtInImages.resolve(reference, { runtime })).rootfs;
      } catch (err) {
        // The registry is down (or not up yet after a reboot): start with what it last gave, so
        // the VMs this node runs stay reachable; a moved tag is picked up at the next start.
        const last =
          err instanceof ImageError && err.reason === 'unreachable'
            ? await builtInImages.lastResolved(reference, runtime)
            : undefined;
        if (!last) throw err;
        log.warn(
          { node, image: reference, digest: last.digest, err: (err as Error).message },
          'registry unreachable: using the last pulled copy of a built-in image',
        );
        return last.rootfs;
      }
    },
    ...(config.WAGGLE_GUEST_BUILD_SCRIPT ? { buildScript: config.WAGGLE_GUEST_BUILD_SCRIPT } : {}),
    overrides: {
      ...(config.WAGGLE_IMAGE_PYTHON ? { python: config.WAGGLE_IMAGE_PYTHON } : {}),
      ...(config.WAGGLE_IMAGE_NODE ? { node: config.WAGGLE_IMAGE_NODE } : {}),
      ...(config.WAGGLE_IMAGE_SHELL ? { shell: config.WAGGLE_IMAGE_SHELL } : {}),
    },
    log: (msg) => log.info({ node }, msg),
    warn: (msg) => log.warn({ node }, msg),
  });
  const accel = await detectAccelerator({
    requested: config.WAGGLE_ACCEL,
    kernel: images.kernel,
    initrd: images.initrd,
  });
  log.info({ node, accelerator: accel.accelerator, reason: accel.reason }, 'accelerator selected');
  const tscKHz = accel.accelerator === 'tcg' ? await readHostTscKHz() : undefined;

  const networks = new VMNetworks({
    cidr: config.WAGGLE_VM_NETWORK_CIDR,
    allowCidrs: config.WAGGLE_EGRESS_ALLOW_CIDRS,
    denyCidrs: config.WAGGLE_EGRESS_DENY_CIDRS,
    upstreams: config.WAGGLE_DNS_UPSTREAMS ?? (await nodeResolvers(config.WAGGLE_DNS_RESOLV_CONF)),
    log,
  });
  await networks.init();
  const vms = new VMManager({
    stateDir: config.WAGGLE_STATE_DIR,
    images,
    networks,
    accelerator: accel.accelerator,
    ...(tscKHz ? { tscKHz } : {}),
    ...(config.WAGGLE_TRUSTED_CA_BUNDLE ? { caBundlePath: config.WAGGLE_TRUSTED_CA_BUNDLE } : {}),
    bootTimeoutMs: config.WAGGLE_BOOT_TIMEOUT,
    maxVMs: config.WAGGLE_MAX_VMS,
    snapshots: config.WAGGLE_SNAPSHOTS,
    maxSnapshots: config.WAGGLE_MAX_SNAPSHOTS,
    ...(config.WAGGLE_VM_CGROUP_ROOT
      ? { vmCgroup: { root: config.WAGGLE_VM_CGROUP_ROOT, name: config.WAGGLE_VM_CGROUP_NAME } }
      : {}),
    log,
  });
  const adoption = await vms.adopt();
  log.info({ node, ...adoption }, 'state recovered');

  let agentRef: Agent | undefined; // the image store's inUse reads the agent's pools once it exists
  // OCI images (docs/adr/0015): only with an allow-list; the toolbox is built (or found) once.
  const imageStore =
    config.WAGGLE_IMAGE_ALLOW.length === 0
      ? undefined
      : new OciImageStore({
          cacheDir: imageCacheDir,
          maxCacheBytes: config.WAGGLE_IMAGE_CACHE_MIB * 2 ** 20,
          maxImageBytes: config.WAGGLE_IMAGE_MAX_MIB * 2 ** 20,
          allowList: config.WAGGLE_IMAGE_ALLOW,
          insecureRegistries: config.WAGGLE_IMAGE_INSECURE_REGISTRIES,
          toolbox: await resolveGuestToolbox({
            ...(config.WAGGLE_GUEST_BUILD_SCRIPT ? { buildScript: config.WAGGLE_GUEST_BUILD_SCRIPT } : {}),
            log: (msg) => log.info({ node }, msg),
            warn: (msg) => log.warn({ node }, msg),
          }),
          // VMs' images and warm pools' images (a pool's next warm VM needs its image).
          inUse: () => [
            ...vms.list().flatMap((vm) => (vm.image ? [vm.image.rootfs] : [])),
            ...(agentRef?.poolImageRootfs() ?? []),
          ],
          log,
        });

  const metrics = createMetrics();
  // The cache bound is also kept when nothing is created: images whose VMs went are collected.
  if (imageStore) {
    setInterval(() => {
      imageStore
        .collect()
        .catch((err: Error) => log.warn({ node, err: err.message }, 'image cache collection failed'));
    }, 10 * 60_000).unref();
  }
  const agent = new Agent({
    vms,
    log,
    ...(imageStore ? { images: imageStore } : {}),
    onVMReady: (ms, origin) => metrics.bootSeconds.observe({ origin }, ms / 1000),
    onExec: (ms, outcome) => metrics.execSeconds.observe({ outcome }, ms / 1000),
    warmPools: {
      maxConcurrentBoots: config.WAGGLE_WARM_BOOTS,
      onBind: (pool, ms) => {
        metrics.warmBinds.inc({ pool });
        metrics.warmBindSeconds.observe(ms / 1000);
      },
    },
    limits: {
      defaultExecTimeoutMs: config.WAGGLE_DEFAULT_EXEC_TIMEOUT,
      maxExecTimeoutMs: config.WAGGLE_MAX_EXEC_TIMEOUT,
      maxOutputBytes: 1 << 20,
      maxWriteBytes: 50 << 20,
      maxReadBytes: 10 << 20,
      maxListEntries: 10_000,
      installTimeoutMs: config.WAGGLE_INSTALL_TIMEOUT,
      interpreters: {
        ...(config.WAGGLE_RUNTIME_PYTHON_EXEC_COMMAND
          ? { python: config.WAGGLE_RUNTIME_PYTHON_EXEC_COMMAND }
          : {}),
        ...(config.WAGGLE_RUNTIME_NODE_EXEC_COMMAND ? { node: config.WAGGLE_RUNTIME_NODE_EXEC_COMMAND } : {}),
        ...(config.WAGGLE_RUNTIME_SHELL_EXEC_COMMAND
          ? { shell: config.WAGGLE_RUNTIME_SHELL_EXEC_COMMAND }
          : {}),
      },
      capacity: {
        vms: config.WAGGLE_MAX_VMS,
        cpus: config.WAGGLE_CAPACITY_CPUS,
        memoryMiB: config.WAGGLE_CAPACITY_MEMORY_MIB,
      },
    },
    info: {
      nodeName: node,
      accelerator: accel.accelerator,
      agentVersion: version.version,
      capacity: {
        vms: config.WAGGLE_MAX_VMS,
        cpus: config.WAGGLE_CAPACITY_CPUS,
        memoryMiB: config.WAGGLE_CAPACITY_MEMORY_MIB,
      },
      runtimes: Object.keys(images.rootfs) as Runtime[],
    },
  });
  agentRef = agent;

  metrics.watchWarmPools(() => agent.pools.status());
  // Adopted warm VMs are known from their records; the operator re-sends the declared set.
  agent.pools.start();

  let ready = false;
  // Assigned below; a renewal seen before the servers start is in tls.current() already.
  let servers: Awaited<ReturnType<typeof startServers>> | undefined;
  const onTlsChange = (next: AgentTls) => {
    try {
      servers?.reloadTls({ cert: next.cert, key: next.key, clientCA: next.ca });
      log.info({ node }, 'serving certificate reloaded');
    } catch (err) {
      log.error({ node, err: (err as Error).message }, 'could not load the renewed certificate');
    }
  };
  let tls: AgentTlsSource | undefined;
  if (config.WAGGLE_AGENT_CERT_SIGNER && config.WAGGLE_AGENT_CLIENT_CA_FILE) {
    // This node's own identity: a key made here, a certificate the operator signs for this node.
    const serving = new ServingCertificate({
      kc: kubeConfigIfAny('true') as KubeConfig,
      nodeName: node,
      signerName: config.WAGGLE_AGENT_CERT_SIGNER,
      dir: config.WAGGLE_AGENT_CERT_DIR ?? join(config.WAGGLE_STATE_DIR, 'pki'),
      caFile: config.WAGGLE_AGENT_CLIENT_CA_FILE,
      checkIntervalMs: config.WAGGLE_AGENT_TLS_RELOAD_INTERVAL,
      log,
      onChange: onTlsChange,
    });
    await serving.ensure();
    serving.start();
    tls = serving;
  } else if (config.WAGGLE_AGENT_TLS_DIR) {
    tls = watchAgentTls(config.WAGGLE_AGENT_TLS_DIR, {
      intervalMs: config.WAGGLE_AGENT_TLS_RELOAD_INTERVAL,
      onChange: onTlsChange,
    });
  }
  metrics.watchCertificates(() => (tls ? [tls.current().cert, tls.current().ca] : []));
  servers = await startServers({
    agent,
    metrics,
    listen: config.WAGGLE_AGENT_LISTEN,
    opsListen: config.WAGGLE_AGENT_OPS_LISTEN,
    isReady: () => ready,
    version,
    envIds,
    ...(tls ? { tls: { cert: tls.current().cert, key: tls.current().key, clientCA: tls.current().ca } } : {}),
  });
  const endpoint = config.WAGGLE_AGENT_ENDPOINT ?? servers.apiUrl;
  log.info({ node, api: servers.apiUrl, ops: servers.opsUrl, endpoint }, 'node-agent listening');

  const kc = kubeConfigIfAny(config.WAGGLE_REGISTER);
  const registrar = kc
    ? new NodeRegistrar(kc, {
        nodeName: node,
        endpoint,
        intervalMs: config.WAGGLE_HEARTBEAT_INTERVAL,
        info: () => agent.info(),
        log,
      })
    : undefined;
  if (registrar) {
    await registrar.heartbeat();
    registrar.start();
    log.info({ node }, 'registered WaggleNode');
  } else {
    log.info({ node }, 'no kubeconfig: running standalone (no WaggleNode registration)');
  }
  ready = true;

  const shutdown = async (signal: string) => {
    const running = vms.list().length;
    log.info({ node, signal, vms: running }, 'node-agent stopping; VMs keep running');
    ready = false;
    registrar?.stop();
    // With VMs, keep the WaggleNode (a restart adopts them); without, leave nothing behind.
    if (registrar && running === 0) {
      await Promise.race([
        registrar
          .deregister()
          .catch((err: Error) => log.warn({ node, err: err.message }, 'deregistering failed')),
        new Promise((r) => setTimeout(r, 3_000).unref()),
      ]);
    }
    agent.close();
    networks.close();
    vms.close();
    tls?.close();
    // fastify's close waits for open HTTP/2 sessions, which clients keep; bound the wait.
    await Promise.race([servers.close(), new Promise((r) => setTimeout(r, 3_000).unref())]);
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: Error) => {
  const msg = err instanceof ConfigError ? err.message : (err.stack ?? err.message);
  process.stderr.write(`node-agent: ${msg}\n`);
  process.exit(1);
});
