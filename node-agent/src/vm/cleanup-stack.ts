/**
 * Undo actions registered as each resource is acquired; on failure they run in reverse order so
 * a partially created VM leaves nothing behind. `release()` keeps the resources (success).
 */
export class CleanupStack {
  #undo: Array<{ what: string; fn: () => Promise<void> | void }> = [];

  push(what: string, fn: () => Promise<void> | void): void {
    this.#undo.push({ what, fn });
  }

  /** Forget every registered undo: the resources now belong to the caller. */
  release(): void {
    this.#undo = [];
  }

  /** Run every undo, newest first; returns the errors of those that failed (never throws). */
  async unwind(): Promise<Error[]> {
    const errors: Error[] = [];
    while (this.#undo.length > 0) {
      const step = this.#undo.pop();
      if (!step) break;
      try {
        await step.fn();
      } catch (err) {
        errors.push(new Error(`cleanup "${step.what}" failed: ${(err as Error).message}`));
      }
    }
    return errors;
  }
}
