/**
 * Polls `probe` until `ok(value)` holds; returns that value. On timeout the error names what was
 * awaited and shows the last value seen.
 */
export async function waitFor<T>(
  probe: () => Promise<T>,
  ok: (value: T) => boolean,
  what: string,
  opts: { timeoutMs?: number; intervalMs?: number; describe?: (value: T) => unknown } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let value = await probe();
  while (!ok(value)) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${opts.timeoutMs ?? 60_000} ms waiting for ${what}; last: ${JSON.stringify(opts.describe ? opts.describe(value) : value)?.slice(0, 2000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
    value = await probe();
  }
  return value;
}
