// What a benchmark outside this package (test/bench/e2e-bench.ts) uses to measure the floor next
// to the node-agent: the raw QEMU + SSH baseline, the exact exec script the agent runs in a guest
// and a command runner over an SSH client. `@waggle/node-agent/bench`; development code only.
export { execScript } from '../src/guest/exec.ts';
export { shellQuote } from '../src/guest/shell-quote.ts';
export { runCommand } from '../src/guest/ssh-connections.ts';
export { freeLoopbackPort, now, type RawVM, rawBoot, type Stats, sampler, stats } from './raw-baseline.ts';
