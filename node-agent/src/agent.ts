import { readFile } from 'node:fs/promises';
import type { Accelerator } from '@waggle/crds';
import type { Logger } from 'pino';
import type { ClientChannel } from 'ssh2';
import { InvalidArgumentError, ResourceExhaustedError, VMSuspendedError } from './errors.ts';
import {
  execCode,
  type GuestRunResult,
  LANGUAGES,
  type Language,
  SANDBOX_USER,
  sandboxPath,
} from './guest/exec.ts';
import { listGuestFiles, readGuestFile, writeGuestFile } from './guest/files.ts';
import { installPackages, type PackageManager } from './guest/packages.ts';
import { checkGuestPort, openGuestPort } from './guest/port-forward.ts';
import { type ProcessOutput, ProcessRegistry } from './guest/processes.ts';
import { GuestConnections } from './guest/ssh-connections.ts';
import { ImageError } from './images/image-errors.ts';
import { formatImageReference, parseImageReference } from './images/image-reference.ts';
import type { ImagePhase, PulledImage } from './images/oci-image-store.ts';
import { KeyedLock } from './pool/keyed-lock.ts';
import type { WarmPoolSpec } from './pool/pool-spec.ts';
import { type WarmPoolStatus, WarmPools, type WarmPoolsOptions } from './pool/warm-pools.ts';
import type { VMManager } from './vm/vm-manager.ts';
import { vmPaths } from './vm/vm-manager.ts';
import {
  type CreateVMSpec,
  isOwned,
  type OwnedVMRecord,
  type VMImage,
  type VMRecord,
  type VMSpec,
} from './vm/vm-record.ts';

/** A warm pool as SetWarmPools declares it: its template's image still a reference. */
export type DeclaredWarmPool = WarmPoolSpec & { image?: string };

/** How often a pool's image reference is resolved again (a moved tag gets new warm VMs). */
const POOL_IMAGE_RECHECK_MS = 10 * 60_000;
/** How long a pool image that could not be pulled waits before the next try. */
const POOL_IMAGE_RETRY_MS = 60_000;

/** Concurrent port tunnels (preview URL connections) per VM and per node. */
export const MAX_TUNNELS_PER_VM = 64;
export const MAX_TUNNELS_PER_NODE = 256;

export interface AgentLimits {
  defaultExecTimeoutMs: number;
  maxExecTimeoutMs: number;
  maxOutputBytes: number;
  maxWriteBytes: number;
  maxReadBytes: number;
  maxListEntries: number;
  installTimeoutMs: number;
  /** Interpreter overrides per language (WAGGLE_RUNTIME_<RT>_EXEC_COMMAND); else the built-in one. */
  interpreters?: Partial<Record<Language, string>>;
  capacity: { vms: number; cpus: number; memoryMiB: number };
}

/** The node's OCI image store (images/oci-image-store.ts), as the agent uses it. */
export interface ImageResolver {
  resolve(
    image: string,
    opts: {
      runtime: VMSpec['runtime'];
      dockerConfigJson?: string;
      onProgress?: (phase: ImagePhase, detail?: string) => void;
    },
  ): Promise<PulledImage>;
  /** Removes least recently used images beyond the cache bound (never one in use). */
  collect(): Promise<string[]>;
}

export interface NodeInfo {
  nodeName: string;
  accelerator: Accelerator;
  agentVersion: string;
  capacity: AgentLimits['capacity'];
  allocated: { vms: number; cpus: number; memoryMiB: number };
  runtimes: VMSpec['runtime'][];
  /** Whether CreateVM runs OCI images here (an image store with a non-empty allow-list). */
  ociImages: boolean;
  /** Unowned VMs held by warm pools (included in allocated). */
  warmVMs: number;
  /** The warm pools this node holds (declared ones, then undeclared ones still holding VMs). */
  pools: WarmPoolStatus[];
  /** Suspended VMs (hold disk only: not in allocated). */
  suspendedVMs: number;
}

/**
 * The node-agent's service layer: what the API handlers call. Owns VM lifecycle (through the VM
 * manager) and guest access (one SSH connection per VM); knows nothing about protocols.
 */
/** How an Exec ended: ran to its exit (any code), hit its timeout, was cancelled, or failed. */
export type ExecOutcome = 'ok' | 'timeout' | 'cancelled' | 'error';

export class Agent {
  readonly vms: VMManager;
  readonly #guests: GuestConnections;
  readonly #limits: AgentLimits;
  readonly #info: Omit<NodeInfo, 'allocated' | 'warmVMs' | 'suspendedVMs' | 'pools' | 'ociImages'>;
  /** Warm VMs of this node's pools: bound in CreateVM, evicted when a create needs the room. */
  readonly pools: WarmPools<VMRecord>;
  /** CreateVMs of one vm id run one at a time (a retry never binds a second warm VM). */
  readonly #creates = new KeyedLock();
  readonly log: Logger;
  readonly #onVMReady: ((bootMs: number, origin: VMRecord['origin']) => void) | undefined;
  readonly #onExec: ((ms: number, outcome: ExecOutcome) => void) | undefined;
  readonly #observed = new Set<string>();
  /** Background processes (StartProcess), per VM; each keeps up to maxOutputBytes of output. */
  readonly #processes: ProcessRegistry;
  /** Open port tunnels per VM. */
  readonly #tunnels = new Map<string, number>();
  readonly #images: ImageResolver | undefined;
  /** Images of warm pools by reference and runtime: resolved, being pulled, or failed (with when). */
  readonly #poolImages = new Map<
    string,
    { image?: VMImage; error?: string; at: number; pulling?: Promise<void> }
  >();
  /** The last declared set (applied again when a pool's image arrives). */
  #declaredPools: DeclaredWarmPool[] = [];

  constructor(opts: {
    vms: VMManager;
    limits: AgentLimits;
    info: Omit<NodeInfo, 'allocated' | 'warmVMs' | 'suspendedVMs' | 'pools' | 'ociImages'>;
    /** Warm pool tuning (boots at once, grace after a restart, …); capacity is `limits.capacity`. */
    warmPools?: Partial<Omit<WarmPoolsOptions<VMRecord>, 'host' | 'capacity' | 'log'>>;
    log: Logger;
    /** Called with the boot time of each VM a CreateVM booted or restored, and which (for metrics). */
    onVMReady?: (bootMs: number, origin: VMRecord['origin']) => void;
    /** Called when each Exec ends, with its duration and how it ended (for metrics). */
    onExec?: (ms: number, outcome: ExecOutcome) => void;
    /** Resolves `spec.image` of CreateVM; without it, VMs run the node's built-in images only. */
    images?: ImageResolver;
  }) {
    this.#images = opts.images;
    this.#onVMReady = opts.onVMReady;
    this.#onExec = opts.onExec;
    this.pools = new WarmPools({
      host: opts.vms,
      capacity: opts.limits.capacity,
      log: opts.log,
      ...opts.warmPools,
    });
    this.vms = opts.vms;
    this.#limits = opts.limits;
    this.#info = opts.info;
    this.log = opts.log;
    this.#guests = new GuestConnections({
      log: opts.log,
      // A restore's or resume's own connection (root) serves the first call.
      adopt: (vmId, username) => (username === 'root' ? this.vms.takeGuestConnection(vmId) : undefined),
      resolve: async (vmId) => {
        const vm = this.vms.get(vmId);
        return {
          host: vm.network.nsIP,
          port: 22,
          username: 'root',
          privateKey: await readFile(vmPaths(this.vms.vmDir(vmId)).clientKey, 'utf8'),
          hostPublicKey: vm.hostPublicKey,
        };
      },
    });
    this.#processes = new ProcessRegistry({
      log: opts.log,
      ringBytes: opts.limits.maxOutputBytes,
      reconnect: (vmId) => this.#guests.get(vmId),
    });
  }

  info(): NodeInfo {
    const all = this.vms.list();
    const running = all.filter((vm) => vm.state !== 'exited' && vm.state !== 'suspended');
    return {
      ...this.#info,
      ociImages: this.#images !== undefined,
      allocated: {
        vms: running.length,
        cpus: running.reduce((n, v) => n + v.cpus, 0),
        memoryMiB: running.reduce((n, v) => n + v.memoryMiB, 0),
      },
      warmVMs: running.filter((vm) => vm.vmId === undefined).length,
      pools: this.pools.status(),
      suspendedVMs: all.filter((vm) => vm.state === 'suspended').length,
    };
  }

  /**
   * Creates the VM `spec.vmId`: with `pool`, binds a ready warm VM of that pool and template when
   * the node holds one (and the pool boots a replacement); otherwise restores or boots, evicting
   * warm VMs first when they hold the room it needs.
   */
  async createVM(
    request: CreateVMSpec,
    opts: {
      pool?: string;
      /** An imagePullSecret's `.dockerconfigjson` for `request.image`, used for this pull only. */
      imagePullConfig?: string;
      onImageProgress?: (phase: ImagePhase, detail?: string) => void;
    } = {},
  ): Promise<OwnedVMRecord> {
    return this.#creates.run(request.vmId, async () => {
      const { image: reference, ...rest } = request;
      const image = reference
        ? await this.#resolveImage(request.vmId, reference, request.runtime, request.diskMiB, opts)
        : undefined;
      const spec: VMSpec = { ...rest, ...(image ? { image } : {}) };
      // A warm VM of an image pool runs the digest this create resolved to, or it is not bound.
      const warm = opts.pool ? await this.pools.bind(spec, opts.pool) : undefined;
      if (warm && isOwned(warm)) return warm;
      const vm = await this.pools.withRoom(spec, () =>
        this.vms.create(spec, opts.pool ? { pool: opts.pool } : {}),
      );
      if (image) {
        this.#images
          ?.collect()
          .catch((err: Error) => this.log.warn({ err: err.message }, 'image cache collection failed'));
      }
      if (vm.bootMs !== undefined && vm.origin !== 'warm' && !this.#observed.has(vm.vmId)) {
        this.#observed.add(vm.vmId); // idempotent repeats return the same VM: count its boot once
        this.#onVMReady?.(vm.bootMs, vm.origin);
      }
      return vm;
    });
  }

  /**
   * The image a create runs: the one its VM already runs when the create repeats (a tag that moved
   * since must not turn a retry into a conflict, nor cost a registry round trip), else resolved by
   * the node's image store (pulled once per digest, then cached).
   */
  async #resolveImage(
    vmId: string,
    reference: string,
    runtime: VMSpec['runtime'],
    diskMiB: number,
    opts: { imagePullConfig?: string; onImageProgress?: (phase: ImagePhase, detail?: string) => void },
  ): Promise<VMImage> {
    const existing = this.vms.list().find((vm) => vm.vmId === vmId)?.image;
    if (existing && existing.reference === normalizedImage(reference)) return existing;
    const pulled = await this.pullImage(reference, runtime, {
      ...(opts.imagePullConfig ? { imagePullConfig: opts.imagePullConfig } : {}),
      ...(opts.onImageProgress ? { onProgress: opts.onImageProgress } : {}),
    });
    // The VM's disk is the image plus what the guest writes: an image bigger than the disk asked
    // for would leave the guest no room (and the node's disk accounting would be wrong).
    const neededMiB = Math.ceil(pulled.rootfsBytes / 2 ** 20);
    if (neededMiB > diskMiB) {
      throw new ImageError(
        'too-large',
        pulled.reference,
        `image "${pulled.reference}" needs a disk of at least ${neededMiB} MiB (its root filesystem), more than the ${diskMiB} MiB asked for: ask for a larger disk (diskMiB, or a template with one)`,
      );
    }
    return vmImageOf(pulled);
  }

  /**
   * Declares the node's warm pools (the whole set). A pool whose template names an image boots
   * nothing until the image is here: the first declaration starts its pull (anonymous: pools
   * serve images anyone may pull) and the set is applied again when it arrives; the reference is
   * resolved again every 10 minutes, so a moved tag gets new warm VMs.
   */
  async setWarmPools(pools: DeclaredWarmPool[]): Promise<WarmPoolStatus[]> {
    this.#declaredPools = pools;
    const now = Date.now();
    const specs = pools.map((p): WarmPoolSpec => {
      const { image: reference, ...pool } = p;
      if (!reference) return pool;
      const key = `${p.template.runtime} ${normalizedImage(reference)}`;
      let entry = this.#poolImages.get(key);
      const stale =
        entry &&
        !entry.pulling &&
        now - entry.at >= (entry.image ? POOL_IMAGE_RECHECK_MS : POOL_IMAGE_RETRY_MS);
      if (!entry || stale) entry = this.#pullPoolImage(key, reference, p.template);
      if (entry.image) return { ...pool, template: { ...pool.template, image: entry.image } };
      return { ...pool, unavailable: entry.error ?? `pulling image ${reference} for the pool` };
    });
    // Pools whose image no pool names any more stop keeping it from collection.
    const named = new Set(
      pools.flatMap((p) => (p.image ? [`${p.template.runtime} ${normalizedImage(p.image)}`] : [])),
    );
    for (const [key, e] of this.#poolImages) if (!named.has(key) && !e.pulling) this.#poolImages.delete(key);
    return this.pools.set(specs);
  }

  /** Root filesystems of warm pools' images (kept from the image cache's collection). */
  poolImageRootfs(): string[] {
    return [...this.#poolImages.values()].flatMap((e) => (e.image ? [e.image.rootfs] : []));
  }

  #pullPoolImage(key: string, reference: string, template: WarmPoolSpec['template']) {
    const before = this.#poolImages.get(key);
    const entry: { image?: VMImage; error?: string; at: number; pulling?: Promise<void> } = {
      ...(before?.image ? { image: before.image } : {}), // the current one serves meanwhile
      at: Date.now(),
    };
    entry.pulling = this.pullImage(reference, template.runtime)
      .then((pulled) => {
        const neededMiB = Math.ceil(pulled.rootfsBytes / 2 ** 20);
        if (neededMiB > template.diskMiB) {
          throw new ImageError(
            'too-large',
            pulled.reference,
            `image "${pulled.reference}" needs a disk of at least ${neededMiB} MiB, more than the pool's ${template.diskMiB} MiB`,
          );
        }
        entry.image = vmImageOf(pulled);
        entry.error = undefined;
      })
      .catch((err: Error) => {
        entry.error = `cannot pull the pool's image: ${err.message}`;
        if (!entry.image)
          this.log.warn({ image: reference, err: err.message }, 'warm pool image pull failed');
      })
      .finally(() => {
        entry.at = Date.now();
        entry.pulling = undefined;
        if (this.#poolImages.get(key) !== entry) return;
        this.setWarmPools(this.#declaredPools).catch((err: Error) =>
          this.log.warn({ err: err.message }, 'warm pools could not be applied again'),
        );
      });
    this.#poolImages.set(key, entry);
    return entry;
  }

  /**
   * Resolves `reference` and pulls, unpacks and prepares it unless the node has it: what a create
   * with the image does first, alone (template pre-pulls; a create's pull reported as its own
   * step). Concurrent pulls of one digest share one pull; each caller hears its phases.
   */
  async pullImage(
    reference: string,
    runtime: VMSpec['runtime'],
    opts: {
      imagePullConfig?: string;
      onProgress?: (phase: ImagePhase, detail?: string) => void;
      /** The VM a create will make: when it exists with this image, its image is the answer. */
      vmId?: string;
    } = {},
  ): Promise<PulledImage> {
    const existing = opts.vmId ? this.vms.list().find((vm) => vm.vmId === opts.vmId)?.image : undefined;
    if (existing && existing.reference === normalizedImage(reference)) {
      return {
        reference: existing.reference,
        digest: existing.digest,
        rootfs: existing.rootfs,
        unpackedBytes: 0,
        rootfsBytes: 0,
        config: { env: [] },
        ...(existing.interpreter ? { interpreter: existing.interpreter } : {}),
        cached: true,
      };
    }
    if (!this.#images) {
      throw new ImageError(
        'not-allowed',
        reference,
        `this node runs no OCI images (its image allow-list, WAGGLE_IMAGE_ALLOW, is empty): ask the cluster admin to allow "${reference}", or leave the image empty to use the ${runtime} runtime's built-in image`,
      );
    }
    return this.#images.resolve(reference, {
      runtime,
      ...(opts.imagePullConfig ? { dockerConfigJson: opts.imagePullConfig } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
  }

  /** The sandbox's PATH in the VM: with its image's PATH for an OCI image, else the default. */
  #pathFor(vmId: string): string | undefined {
    const image = this.vms.get(vmId).image;
    return image?.path ? sandboxPath(image.path) : undefined;
  }

  /** The interpreter of `language` in the VM: the admin's override, else its image's, else the name. */
  #interpreterFor(vmId: string, language: Language): string | undefined {
    const override = this.#limits.interpreters?.[language];
    if (override) return override;
    const vm = this.vms.get(vmId);
    return vm.image && vm.runtime === language ? vm.image.interpreter : undefined;
  }

  async destroyVM(vmId: string): Promise<boolean> {
    // Its background processes die with it: records and waiting reads go first.
    this.#processes.forget(vmId);
    this.#guests.close(vmId);
    this.#observed.delete(vmId);
    return this.vms.destroy(vmId);
  }

  /**
   * Saves a running VM to disk and stops it (docs/adr/0014). Its SSH connections are closed
   * first: background processes started with StartProcess stream over them and end here (their
   * records stay, saying so); what the guest runs by itself continues after ResumeVM.
   */
  async suspendVM(vmId: string) {
    const vm = this.vms.get(vmId);
    if (vm.state === 'running') {
      this.#processes.endAll(
        vmId,
        'ended when its VM was suspended (a background process streams over a connection a suspend closes)',
      );
      this.#guests.close(vmId);
    }
    return this.vms.suspend(vmId);
  }

  /** Continues a suspended VM; resolves when its guest answers again. */
  /** Resumes a suspended VM; warm VMs make room for it as they do for a create. */
  async resumeVM(vmId: string) {
    const vm = this.vms.get(vmId);
    if (vm.state !== 'suspended') return this.vms.resume(vmId);
    return this.pools.withRoom({ vmId, cpus: vm.cpus, memoryMiB: vm.memoryMiB }, () => this.vms.resume(vmId));
  }

  /** Checks a request to run code in a running VM; returns its language (default: the runtime's). */
  async #codeRequest(req: { vmId: string; code: string; language?: string }): Promise<Language> {
    const vm = await this.#running(req.vmId);
    const language = (req.language || vm.runtime) as Language;
    if (!Object.hasOwn(LANGUAGES, language)) {
      throw new InvalidArgumentError(
        `language "${req.language}" is not supported; use python, node or shell`,
      );
    }
    if (typeof req.code !== 'string' || req.code.length === 0) {
      throw new InvalidArgumentError('code is empty; pass the program text to run');
    }
    return language;
  }

  /** The VM, if it runs; a VM whose QEMU went away says so (VMExitedError) instead. */
  async #running(vmId: string): Promise<VMRecord> {
    await this.vms.ensureAlive(vmId);
    const vm = this.vms.get(vmId);
    if (vm.state === 'suspended') throw new VMSuspendedError(vmId);
    if (vm.state !== 'running') {
      throw new InvalidArgumentError(
        `VM ${vmId} is ${vm.state}, not running; wait until CreateVM has returned`,
      );
    }
    return vm;
  }

  async exec(req: {
    vmId: string;
    code: string;
    language?: string;
    timeoutMs?: number;
    maxOutputBytes?: number;
    onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
    signal?: AbortSignal;
  }): Promise<GuestRunResult> {
    const t0 = performance.now();
    try {
      const result = await this.#exec(req);
      this.#onExec?.(
        performance.now() - t0,
        result.timedOut ? 'timeout' : result.cancelled ? 'cancelled' : 'ok',
      );
      return result;
    } catch (err) {
      this.#onExec?.(performance.now() - t0, 'error');
      throw err;
    }
  }

  async #exec(req: Parameters<Agent['exec']>[0]): Promise<GuestRunResult> {
    const language = await this.#codeRequest(req);
    const timeoutMs = req.timeoutMs || this.#limits.defaultExecTimeoutMs;
    if (timeoutMs > this.#limits.maxExecTimeoutMs) {
      throw new InvalidArgumentError(
        `timeout ${timeoutMs} ms is above the maximum of ${this.#limits.maxExecTimeoutMs} ms`,
      );
    }
    const maxOutputBytes = Math.min(
      req.maxOutputBytes || this.#limits.maxOutputBytes,
      this.#limits.maxOutputBytes,
    );
    const client = await this.#guests.get(req.vmId);
    const interpreter = this.#interpreterFor(req.vmId, language);
    const path = this.#pathFor(req.vmId);
    return execCode(client, {
      code: req.code,
      language,
      ...(interpreter ? { interpreter } : {}),
      ...(path ? { path } : {}),
      timeoutMs,
      maxOutputBytes,
      ...(req.onOutput ? { onOutput: capStreamedOutput(req.onOutput, maxOutputBytes) } : {}),
      ...(req.signal ? { signal: req.signal } : {}),
    });
  }

  /**
   * Starts code in the background (as exec runs it, but with no timeout) and returns its id at
   * once; ReadProcessOutput reads its output, KillProcess stops it, and it dies with its VM.
   */
  async startProcess(req: {
    vmId: string;
    code: string;
    language?: string;
  }): Promise<{ processId: string; startedAt: string }> {
    const language = await this.#codeRequest(req);
    const interpreter = this.#interpreterFor(req.vmId, language);
    const path = this.#pathFor(req.vmId);
    return this.#processes.start(req.vmId, await this.#guests.get(req.vmId), {
      code: req.code,
      language,
      ...(interpreter ? { interpreter } : {}),
      ...(path ? { path } : {}),
    });
  }

  /** A background process's output after `since` (at most maxOutputBytes), and its state. */
  async readProcessOutput(req: {
    vmId: string;
    processId: string;
    since: number;
    maxBytes?: number;
    waitMs?: number;
    signal?: AbortSignal;
  }): Promise<ProcessOutput> {
    await this.#running(req.vmId);
    return this.#processes.read(req.vmId, req.processId, {
      since: req.since,
      maxBytes: Math.min(req.maxBytes || this.#limits.maxOutputBytes, this.#limits.maxOutputBytes),
      ...(req.waitMs ? { waitMs: req.waitMs } : {}),
      ...(req.signal ? { signal: req.signal } : {}),
    });
  }

  /** Stops a background process and everything it started; idempotent for one that has ended. */
  async killProcess(vmId: string, processId: string): Promise<{ wasRunning: boolean; exitCode?: number }> {
    await this.#running(vmId);
    return this.#processes.kill(vmId, processId);
  }

  /**
   * File tools act as the sandbox user, over a second connection per VM (opened on first use):
   * the guest's own permissions apply, and what they create belongs to the sandbox user.
   */
  #files(vmId: string) {
    return this.#guests.get(vmId, SANDBOX_USER.name);
  }

  async writeFile(vmId: string, path: string, content: Buffer, mode?: number) {
    await this.#running(vmId);
    return writeGuestFile(await this.#files(vmId), path, content, {
      maxBytes: this.#limits.maxWriteBytes,
      ...(mode !== undefined ? { mode } : {}),
      log: this.log.child({ vmId }),
    });
  }

  async readFile(vmId: string, path: string, maxBytes?: number) {
    await this.#running(vmId);
    const limit = Math.min(maxBytes || this.#limits.maxReadBytes, this.#limits.maxReadBytes);
    return readGuestFile(await this.#files(vmId), path, { maxBytes: limit, log: this.log.child({ vmId }) });
  }

  async listFiles(vmId: string, path?: string) {
    await this.#running(vmId);
    return listGuestFiles(await this.#files(vmId), path || SANDBOX_USER.home, {
      maxEntries: this.#limits.maxListEntries,
      log: this.log.child({ vmId }),
    });
  }

  async installPackages(
    vmId: string,
    packages: string[],
    manager?: string,
    timeoutMs?: number,
    opts: { signal?: AbortSignal; onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void } = {},
  ) {
    const vm = await this.#running(vmId);
    if (manager && !['pip', 'npm', 'apt', 'apk'].includes(manager)) {
      throw new InvalidArgumentError(`manager "${manager}" is not supported; use pip, npm, apt or apk`);
    }
    // The shell runtime installs with the image's own system package manager (apk on Alpine).
    const system = this.vms.get(vmId).image?.systemPackages ?? 'apt';
    const chosen = (manager as PackageManager | undefined) ?? (vm.runtime === 'shell' ? system : undefined);
    if (chosen === 'none') {
      throw new InvalidArgumentError(
        `image "${this.vms.get(vmId).image?.reference}" has no system package manager Waggle knows (apt-get, apk): preinstall what you need in the image, or use pip or npm`,
      );
    }
    const path = this.#pathFor(vmId);
    return installPackages(await this.#guests.get(vmId), {
      runtime: vm.runtime,
      packages,
      ...(path ? { path } : {}),
      ...(chosen ? { manager: chosen } : {}),
      timeoutMs: Math.min(timeoutMs || this.#limits.installTimeoutMs, this.#limits.installTimeoutMs),
      maxOutputBytes: this.#limits.maxOutputBytes,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onOutput ? { onOutput: capStreamedOutput(opts.onOutput, this.#limits.maxOutputBytes) } : {}),
    });
  }

  /**
   * A TCP connection to a port inside the VM (for preview URLs), over the sandbox user's SSH
   * connection. At most MAX_TUNNELS_PER_VM per VM and MAX_TUNNELS_PER_NODE in all are open at
   * once (each SSH channel may buffer up to its window), so pages that open connections without
   * end cannot exhaust the agent. The caller must call `release` when done with the channel
   * (not left to a guest-driven close event, which a guest can withhold).
   */
  async openPort(vmId: string, port: number): Promise<{ channel: ClientChannel; release: () => void }> {
    checkGuestPort(port);
    await this.#running(vmId);
    const open = this.#tunnels.get(vmId) ?? 0;
    const total = [...this.#tunnels.values()].reduce((a, b) => a + b, 0);
    if (open >= MAX_TUNNELS_PER_VM || total >= MAX_TUNNELS_PER_NODE) {
      throw new ResourceExhaustedError(
        open >= MAX_TUNNELS_PER_VM
          ? `VM ${vmId} already has ${open} open port connections (the most at once); close some and retry`
          : `this node already has ${total} open port connections (the most at once); retry later`,
      );
    }
    this.#tunnels.set(vmId, open + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const n = (this.#tunnels.get(vmId) ?? 1) - 1;
      if (n <= 0) this.#tunnels.delete(vmId);
      else this.#tunnels.set(vmId, n);
    };
    try {
      const channel = await openGuestPort(await this.#files(vmId), port);
      return { channel, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Open port tunnels of a VM (for tests and metrics). */
  openTunnels(vmId: string): number {
    return this.#tunnels.get(vmId) ?? 0;
  }

  close(): void {
    this.pools.close();
    this.#processes.closeAll();
    this.#guests.closeAll();
  }
}

/**
 * Streams at most `maxBytes` of each of stdout and stderr as they arrive (the final result says
 * how much there was in all): a guest that prints without end costs the agent and the wire no
 * more than the result itself.
 */
export function capStreamedOutput(
  onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void,
  maxBytes: number,
): (stream: 'stdout' | 'stderr', chunk: Buffer) => void {
  const sent = { stdout: 0, stderr: 0 };
  return (stream, chunk) => {
    const room = maxBytes - sent[stream];
    if (room <= 0) return;
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    sent[stream] += part.length;
    onOutput(stream, part);
  };
}

/** `python:3.12` as the store records it (`docker.io/library/python:3.12`); as given if invalid. */
function normalizedImage(reference: string): string {
  try {
    return formatImageReference(parseImageReference(reference));
  } catch {
    return reference;
  }
}

/** What a VM records of its OCI image, from the store's answer. */
function vmImageOf(pulled: PulledImage): VMImage {
  const path = pulled.config.env
    .find((e) => e.startsWith('PATH='))
    ?.slice(5)
    .split(':')
    .filter((p) => p && p.length <= 1024) // an env(1) argument is bounded (128 KiB per string)
    .slice(0, 64);
  return {
    reference: pulled.reference,
    digest: pulled.digest,
    rootfs: pulled.rootfs,
    ...(pulled.interpreter ? { interpreter: pulled.interpreter } : {}),
    ...(path?.length ? { path } : {}),
    ...(pulled.systemPackages && pulled.systemPackages !== 'apt'
      ? { systemPackages: pulled.systemPackages }
      : {}),
  };
}
