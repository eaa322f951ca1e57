import type { Reporter, SerializedError, TestModule } from 'vitest/node';

/**
 * Prints one plain closing line, `tests: N passed, N failed, N skipped`, after vitest's own
 * summary, so CI logs end with a machine-readable count.
 *
 * Skipped tests are not allowed to look like passes: a run with skipped or todo tests fails
 * unless WAGGLE_ALLOW_SKIPPED=1 (tests that cannot run on a machine must fail and say why).
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<SerializedError>,
  ): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const mod of testModules) {
      if (mod.state() === 'failed' && mod.errors().length > 0) failed++;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else if (state === 'skipped') skipped++;
      }
    }
    failed += unhandledErrors.length;
    const line = `tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`;
    process.stdout.write(`\n${line}`);
    if (skipped > 0 && process.env.WAGGLE_ALLOW_SKIPPED !== '1') {
      process.stderr.write(
        `${skipped} test(s) were skipped; skipped tests do not count as passing. ` +
          'Make them run (or fail with a reason), or set WAGGLE_ALLOW_SKIPPED=1 for a local run.\n',
      );
      process.exitCode = 1;
    }
  }
}
