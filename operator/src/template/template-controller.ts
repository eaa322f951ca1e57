import {
  k8sTime,
  type TemplateNodeStatus,
  type WaggleNode,
  type WaggleTemplate,
  type WaggleTemplateStatus,
} from '@waggle/crds';
import { classifyNodeAgentError, type NodeAgentClient, toProtoRuntime } from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import { type PullStep, pullImageOnNode, STEP_TEXT } from '../environment/image-pulls.ts';
import type { NodeHealth } from '../environment/placement.ts';
import type { PullConfigSource } from '../environment/pull-configs.ts';
import { Controller, type ReconcileResult } from '../runtime/controller.ts';
import { statusDiffers } from '../runtime/status-diff.ts';
import { templateStatus } from './status.ts';

export interface TemplateControllerConfig {
  /** A node that has the image is asked again this often (the cache may drop it; a tag may move); default 10 min. */
  recheckMs?: number;
  /** A node that could not pull it is asked again after this; default 60 s. */
  retryMs?: number;
  /** Deadline of one PullImage call; default 10 min. */
  pullTimeoutMs?: number;
}

/** Writes a WaggleTemplate's status; returns the object as stored. */
export interface TemplateWriter {
  updateStatus(template: WaggleTemplate, status: WaggleTemplateStatus): Promise<WaggleTemplate>;
}

export interface TemplateControllerDeps {
  getTemplate: (name: string) => WaggleTemplate | undefined;
  listTemplates: () => readonly WaggleTemplate[];
  listNodes: () => readonly WaggleNode[];
  /** Ready, heartbeat fresh (the same judgement as scheduling). */
  health: Pick<NodeHealth, 'alive'>;
  agents: { for(endpoint: string, nodeName: string): Pick<NodeAgentClient, 'pullImage'> };
  /** The template's imagePullSecret; absent: anonymous pulls. */
  pullConfigs?: Pick<PullConfigSource, 'forTemplate'>;
  store: TemplateWriter;
  log: Logger;
  config?: TemplateControllerConfig;
  now?: () => number;
}

const DEFAULTS = { recheckMs: 600_000, retryMs: 60_000, pullTimeoutMs: 600_000 };
/** Node events within this window are handled in one pass over every template. */
const BATCH_MS = 50;

/** What one node said of one template's image (as of `image`: a changed spec starts over). */
interface NodePull {
  image: string;
  state: TemplateNodeStatus['state'];
  step?: PullStep;
  digest?: string;
  message: string;
  /** When the last call started (ms). */
  at: number;
  inFlight: boolean;
  /** Failed calls in a row: each waits twice as long as the last (retryMs up to recheckMs). */
  failures: number;
  /** Not asked yet: the node was busy with another template's pull (due as soon as it is free). */
  waiting?: boolean;
}

/**
 * Pre-pulls templates' images (docs/custom-images.md): every Ready node that runs OCI images is
 * asked to pull each template's image (PullImage; the node shares concurrent pulls of a digest and
 * answers from its cache afterwards), again every `recheckMs`, and each template's status says
 * which nodes have it. Environments made from a ready template start without a pull. At most one
 * of these pulls runs per node at a time, so templates do not crowd out environments' own pulls.
 */
export class TemplateController {
  readonly #d: TemplateControllerDeps;
  readonly #c: Required<TemplateControllerConfig>;
  /** `${template}\0${node}` → what the node said. */
  readonly #pulls = new Map<string, NodePull>();
  /** Nodes with a template pull in flight. */
  readonly #busy = new Set<string>();
  #controller: Controller | undefined;
  #batch: NodeJS.Timeout | undefined;

  constructor(deps: TemplateControllerDeps) {
    this.#d = deps;
    const c = deps.config ?? {};
    this.#c = {
      recheckMs: c.recheckMs ?? DEFAULTS.recheckMs,
      retryMs: c.retryMs ?? DEFAULTS.retryMs,
      pullTimeoutMs: c.pullTimeoutMs ?? DEFAULTS.pullTimeoutMs,
    };
  }

  #now(): number {
    return this.#d.now?.() ?? Date.now();
  }

  start(): void {
    this.#controller = new Controller({
      name: 'waggletemplate',
      workers: 2,
      reconcile: (key) => this.reconcile(key),
      log: this.#d.log,
    });
    this.#controller.start();
    // A new leadership starts from what the nodes say now (templates deleted meanwhile vanish).
    this.#pulls.clear();
    this.#busy.clear();
    this.changed();
  }

  async stop(): Promise<void> {
    if (this.#batch) clearTimeout(this.#batch);
    this.#batch = undefined;
    const c = this.#controller;
    this.#controller = undefined;
    await c?.stop();
  }

  /** A template changed: look at it. */
  templateChanged(name: string): void {
    this.#controller?.enqueue(name);
  }

  /** Nodes changed (one joined, one left, readiness): look at every template soon. */
  changed(): void {
    if (!this.#controller || this.#batch) return;
    this.#batch = setTimeout(() => {
      this.#batch = undefined;
      for (const t of this.#d.listTemplates()) this.#controller?.enqueue(t.metadata.name as string);
    }, BATCH_MS);
    this.#batch.unref();
  }

  async reconcile(name: string): Promise<ReconcileResult | undefined> {
    const template = this.#d.getTemplate(name);
    if (!template || template.metadata.deletionTimestamp) {
      this.#forget(name, () => true);
      return undefined;
    }
    const image = template.spec.image;
    const eligible = this.#d
      .listNodes()
      .filter(
        (n) => n.status?.endpoint && n.status.ociImages && this.#d.health.alive(n.metadata.name as string),
      );
    const names = new Set(eligible.map((n) => n.metadata.name as string));
    // Nodes gone or no longer eligible, and what was said of another image: forgotten.
    this.#forget(name, (node, pull) => !names.has(node) || pull.image !== image);

    const now = this.#now();
    let nextDueMs = Number.POSITIVE_INFINITY;
    const nodes: TemplateNodeStatus[] = [];
    if (image) {
      for (const node of eligible) {
        const nodeName = node.metadata.name as string;
        const key = `${name}\0${nodeName}`;
        let pull = this.#pulls.get(key);
        if (pull && pull.image !== image) pull = undefined; // a call for the old image still runs
        const waitMs = pull && !pull.waiting ? pull.at + this.#intervalOf(pull) - now : 0;
        if (!pull?.inFlight && waitMs <= 0) {
          if (this.#busy.has(nodeName)) {
            // Its turn comes when the node's other pull ends (that enqueues every template).
            pull ??= {
              image,
              state: 'Pulling',
              message: 'waiting for another template’s pull on this node',
              at: now,
              inFlight: false,
              failures: 0,
              waiting: true,
            };
          } else {
            pull = this.#start(template, image, node, pull);
          }
          this.#pulls.set(key, pull);
        } else if (!pull?.inFlight) {
          nextDueMs = Math.min(nextDueMs, waitMs);
        }
        if (!pull) continue;
        nodes.push({
          name: nodeName,
          state: pull.state,
          ...(pull.digest && pull.state === 'Ready' ? { digest: pull.digest } : {}),
          message: pull.step && pull.state === 'Pulling' ? STEP_TEXT[pull.step] : pull.message,
          ...(pull.waiting ? {} : { lastCheckTime: k8sTime(new Date(pull.at)) }),
        });
      }
    }
    const next = templateStatus(template, nodes, new Date(now));
    if (statusDiffers(template.status, next)) await this.#d.store.updateStatus(template, next);
    return Number.isFinite(nextDueMs) ? { requeueAfterMs: Math.max(1_000, nextDueMs) } : undefined;
  }

  /** Asks the node for the image, off the worker; its steps and its end queue the template. */
  #start(template: WaggleTemplate, image: string, node: WaggleNode, before: NodePull | undefined): NodePull {
    const name = template.metadata.name as string;
    const nodeName = node.metadata.name as string;
    const key = `${name}\0${nodeName}`;
    // A node that had it keeps saying so while it is asked again (a cached answer is quick).
    const pull: NodePull =
      before?.state === 'Ready'
        ? { ...before, at: this.#now(), inFlight: true }
        : {
            image,
            state: before?.state === 'Failed' ? 'Failed' : 'Pulling',
            message: before?.state === 'Failed' ? before.message : 'asking the node for the image',
            at: this.#now(),
            inFlight: true,
            failures: before?.failures ?? 0,
          };
    const enqueue = () => this.#controller?.enqueue(name);
    this.#busy.add(nodeName);
    const agent = this.#d.agents.for(node.status?.endpoint as string, nodeName);
    const log = this.#d.log.child({ template: name, node: nodeName, image });
    void (async () => {
      const imagePullConfig = await withDeadline(
        this.#d.pullConfigs?.forTemplate(template) ?? Promise.resolve(undefined),
        30_000,
        `reading template "${name}"'s imagePullSecret took longer than 30 s`,
      );
      const facts = await pullImageOnNode(
        agent,
        {
          image,
          runtime: toProtoRuntime(template.spec.runtime),
          ...(imagePullConfig ? { imagePullConfig } : {}),
        },
        (step) => {
          if (this.#pulls.get(key) !== pull) return;
          // Past resolving the node is pulling for real (not cached, or a tag moved).
          if (step !== 'resolving') pull.state = 'Pulling';
          pull.step = step;
          enqueue();
        },
        { timeoutMs: this.#c.pullTimeoutMs },
      );
      const neededMiB = Math.ceil((facts?.rootfsBytes ?? 0) / 2 ** 20);
      if (neededMiB > template.spec.resources.diskMiB) {
        throw new Error(
          `image "${image}" needs a disk of at least ${neededMiB} MiB, more than the template's ${template.spec.resources.diskMiB} MiB (spec.resources.diskMiB)`,
        );
      }
      return facts;
    })()
      .then(
        (facts) => {
          pull.state = 'Ready';
          pull.step = undefined;
          pull.failures = 0;
          if (facts) {
            pull.digest = facts.digest;
            pull.message = facts.cached
              ? `has ${facts.digest}`
              : `pulled ${facts.digest} in ${(facts.ms / 1000).toFixed(1)} s`;
            if (!facts.cached) log.info({ digest: facts.digest, ms: facts.ms }, 'template image pulled');
          } else {
            pull.message = 'its node-agent predates PullImage: environments pull the image on create';
          }
        },
        (err: unknown) => {
          const failure = classifyNodeAgentError(err);
          pull.failures++;
          pull.step = undefined;
          // A node that has the image stays Ready when only asking it again failed (an agent
          // restart, a registry hiccup): its copy is still there.
          if (pull.state === 'Ready' && failure.kind === 'transient') return;
          pull.state = 'Failed';
          pull.digest = undefined;
          pull.message = failure.message.slice(0, 2000); // the CRD's bound is 2048
          log.warn({ err: failure.message, failures: pull.failures }, 'template image pull failed');
        },
      )
      .finally(() => {
        pull.inFlight = false;
        this.#busy.delete(nodeName);
        enqueue();
        this.changed(); // templates that waited for this node
      });
    return pull;
  }

  /** How long after its last call a node is asked again. */
  #intervalOf(pull: NodePull): number {
    if (pull.failures === 0) return this.#c.recheckMs;
    return Math.min(this.#c.retryMs * 2 ** (pull.failures - 1), this.#c.recheckMs);
  }

  #forget(template: string, drop: (node: string, pull: NodePull) => boolean): void {
    for (const [key, pull] of this.#pulls) {
      const [t, node] = key.split('\0') as [string, string];
      if (t === template && !pull.inFlight && drop(node, pull)) this.#pulls.delete(key);
    }
  }
}

/** `p`, or a rejection with `message` after `ms`. */
function withDeadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
