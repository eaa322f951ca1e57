import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The `node` project's files share one real node. The chart's lifecycle ends with `pnpm waggle
 * down`, which removes the node: it runs last, and every other file keeps vitest's own order.
 */
export const RUNS_LAST = 'test/node/chart-lifecycle.test.ts';

export class NodeLifecycleLast extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const last = (f: TestSpecification) => f.moduleId.endsWith(RUNS_LAST);
    return [...sorted.filter((f) => !last(f)), ...sorted.filter(last)];
  }
}
