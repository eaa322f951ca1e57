/**
 * What the controller runtime reports about itself, in controller-runtime's terms: each reconcile
 * by controller and result, and each work queue's adds, depth, waits and retries. The runtime only
 * calls these hooks; `../metrics.ts` turns them into Prometheus series. Like controller-runtime's
 * global registry, one process-wide sink (`setRuntimeMetrics`, called once by main) reaches every
 * controller however deep it is built; a test passes its own through `ControllerOptions.metrics`.
 */

/** How one reconcile ended (controller_runtime_reconcile_total's `result` label). */
export type ReconcileOutcome = 'success' | 'error' | 'requeue' | 'requeue_after';

/** One work queue's hooks (client-go's workqueue metrics provider). */
export interface WorkQueueMetrics {
  /** A key was added (not already waiting). */
  added(): void;
  /** Keys now waiting to be handed out. */
  depth(n: number): void;
  /** A key waited this long between its add and a worker taking it. */
  queued(seconds: number): void;
  /** A worker held a key this long (get to done). */
  worked(seconds: number): void;
  /** A key was re-added with backoff after a failure. */
  retried(): void;
}

export interface RuntimeMetrics {
  /** The hooks of the queue called `name` (a controller's queue has the controller's name). */
  queue(name: string): WorkQueueMetrics;
  /** One reconcile of `controller` ended; `terminal`: an error retrying cannot fix. */
  reconciled(controller: string, outcome: ReconcileOutcome, seconds: number, terminal?: boolean): void;
}

const noop = () => undefined;
export const NO_QUEUE_METRICS: WorkQueueMetrics = {
  added: noop,
  depth: noop,
  queued: noop,
  worked: noop,
  retried: noop,
};

/** Reports nothing (the default until main installs a sink). */
export const NO_RUNTIME_METRICS: RuntimeMetrics = { queue: () => NO_QUEUE_METRICS, reconciled: noop };

let installed: RuntimeMetrics = NO_RUNTIME_METRICS;

/** Installs the process-wide sink every controller built afterwards reports to. */
export function setRuntimeMetrics(m: RuntimeMetrics): void {
  installed = m;
}

export function runtimeMetrics(): RuntimeMetrics {
  return installed;
}
