// The three deadlines a new environment meets, and their defaults, in one place. They nest:
// see docs/reliability.md#timeouts-and-how-they-nest.

/** Default of each create deadline, in milliseconds. */
export const CREATE_DEADLINE_DEFAULTS = {
  /**
   * node-agent `WAGGLE_BOOT_TIMEOUT`: QEMU started → the guest announces readiness on its
   * serial console. The innermost deadline: CreateVM fails (VMBootError) when it passes.
   */
  guestBootMs: 120_000,
  /**
   * mcp-gateway `WAGGLE_CREATE_WAIT_TIMEOUT`: how long `create_environment` waits for the
   * environment to be Running before it deletes it and answers isError. The caller's patience:
   * longer than a guest boot, so a slow boot that succeeds is not thrown away.
   */
  createWaitMs: 180_000,
  /**
   * operator `WAGGLE_CREATE_VM_TIMEOUT`: deadline of one CreateVM call (image, disk, network and
   * the guest boot), retried with backoff. Longer than a guest boot, so the agent's own boot
   * timeout — which says why — fires first.
   */
  createVMMs: 300_000,
} as const;
