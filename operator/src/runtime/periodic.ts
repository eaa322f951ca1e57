/**
 * Runs `pass` every `intervalMs` (first at once when `immediately`); a pass never overlaps the
 * previous one, and a failed pass is reported to `onError` and tried again at the next tick.
 * Returns the function that stops it.
 */
export function startPeriodic(
  pass: () => Promise<unknown>,
  intervalMs: number,
  onError: (err: Error) => void,
  opts: { immediately?: boolean } = {},
): () => void {
  let running = false;
  const tick = () => {
    if (running) return;
    running = true;
    pass()
      .catch(onError)
      .finally(() => {
        running = false;
      });
  };
  if (opts.immediately) tick();
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
