import {
  Code,
  ConnectError,
  ImagePullPhase,
  type NodeAgentClient,
  type Runtime,
} from '@waggle/node-agent/client';

/** The steps of a node's image pull, as the environment's status names them. */
export type PullStep = 'resolving' | 'pulling' | 'unpacking' | 'building';

/** What the node said of an image it has. */
export interface PulledImageFacts {
  digest: string;
  cached: boolean;
  /** Size of its root filesystem on the node (0 when the node did not say). */
  rootfsBytes?: number;
  /** How long the pull took as this operator saw it. */
  ms: number;
}

/** Where an environment's image pull is: the step under way, the image once the node has it, or failed. */
export interface ImagePullState {
  step?: PullStep;
  image?: PulledImageFacts;
  /** The pull itself failed (not the CreateVM after it). */
  failed?: boolean;
}

const STEPS: Partial<Record<ImagePullPhase, PullStep>> = {
  [ImagePullPhase.RESOLVING]: 'resolving',
  [ImagePullPhase.PULLING]: 'pulling',
  [ImagePullPhase.UNPACKING]: 'unpacking',
  [ImagePullPhase.BUILDING]: 'building',
};

/** How a step reads in a status message ("… on node-1: unpacking the layers"). */
export const STEP_TEXT: Record<PullStep, string> = {
  resolving: 'reading the manifest',
  pulling: 'downloading the layers',
  unpacking: 'unpacking the layers',
  building: 'adding the guest toolbox and writing the root filesystem',
};

/**
 * The progress of the image pulls that creates make before CreateVM, by environment UID. Only
 * memory: a restarted operator calls PullImage again, which joins the node's pull under way.
 */
export class ImagePulls {
  readonly #m = new Map<string, ImagePullState>();

  get(uid: string): ImagePullState | undefined {
    return this.#m.get(uid);
  }

  step(uid: string, step: PullStep): void {
    this.#m.set(uid, { step });
  }

  done(uid: string, image: PulledImageFacts): void {
    this.#m.set(uid, { image });
  }

  failed(uid: string): void {
    this.#m.set(uid, { failed: true });
  }

  forget(uid: string): void {
    this.#m.delete(uid);
  }
}

/**
 * Streams PullImage on a node: `onStep` hears each step as it starts. Resolves to what the node
 * says of the image, or undefined from a node-agent older than PullImage (its CreateVM pulls
 * without telling). Image errors leave as the node's Connect errors (ImageErrorDetail).
 */
export async function pullImageOnNode(
  agent: Pick<NodeAgentClient, 'pullImage'>,
  req: { image: string; runtime: Runtime; imagePullConfig?: string; vmId?: string },
  onStep: (step: PullStep) => void,
  opts: { timeoutMs: number },
): Promise<PulledImageFacts | undefined> {
  const t0 = Date.now();
  try {
    for await (const msg of agent.pullImage(req, { timeoutMs: opts.timeoutMs })) {
      if (msg.event.case === 'phase') {
        const step = STEPS[msg.event.value];
        if (step) onStep(step);
      } else if (msg.event.case === 'image') {
        const { digest, cached, rootfsBytes } = msg.event.value;
        return { digest, cached, rootfsBytes: Number(rootfsBytes), ms: Date.now() - t0 };
      }
    }
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unimplemented) return undefined;
    throw err;
  }
  throw new ConnectError(`PullImage of "${req.image}" ended without the image`, Code.Internal);
}
