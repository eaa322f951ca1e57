import { describe, expect, it } from 'vitest';
import { HeartbeatTracker } from './heartbeat-tracker.ts';

function setup() {
  let t = 1_000;
  let healthy: number | undefined = 0;
  const tracker = new HeartbeatTracker(
    () => healthy,
    () => t,
  );
  return {
    tracker,
    advance: (ms: number) => {
      t += ms;
    },
    watchDown: () => {
      healthy = undefined;
    },
    watchUp: () => {
      healthy = t;
    },
  };
}

describe('HeartbeatTracker', () => {
  it('measures silence from when this observer last saw the heartbeat change, not from its value', () => {
    const { tracker, advance } = setup();
    // The agent's clock is an hour behind: its timestamp alone would say "stale".
    tracker.observe('a', '2026-12-02T03:00:00Z');
    advance(5_000);
    expect(tracker.silentForMs('a')).toBe(5_000);
    tracker.observe('a', '2026-12-02T03:00:10Z');
    expect(tracker.silentForMs('a')).toBe(0);
    // A resync that delivers the same heartbeat is not a new beat.
    advance(30_000);
    tracker.observe('a', '2026-12-02T03:00:10Z');
    expect(tracker.silentForMs('a')).toBe(30_000);
  });

  it('does not count time when the watch was down (an apiserver outage is not silence)', () => {
    const { tracker, advance, watchDown, watchUp } = setup();
    tracker.observe('a', 'beat-1');
    advance(10_000);
    watchDown();
    advance(90_000);
    expect(tracker.silentForMs('a')).toBe(0);
    watchUp();
    advance(3_000);
    // The window restarts when the watch is back, though the last beat is 103 s old.
    expect(tracker.silentForMs('a')).toBe(3_000);
  });

  it('treats a node it never saw as silent forever and forgets deleted nodes', () => {
    const { tracker, advance } = setup();
    expect(tracker.silentForMs('ghost')).toBe(Number.POSITIVE_INFINITY);
    tracker.observe('b', undefined);
    advance(1_000);
    expect(tracker.silentForMs('b')).toBe(1_000);
    tracker.forget('b');
    expect(tracker.silentForMs('b')).toBe(Number.POSITIVE_INFINITY);
  });
});
