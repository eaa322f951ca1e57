// `pnpm waggle <command>`: Waggle on this machine. One file per command beside this one; the
// harness library (../cluster, ../stack.ts, …) does the work. `pnpm cluster <command>` is
// `pnpm waggle cluster <command>`.
import { CLUSTER_COMMANDS } from './cluster/commands.ts';
import { type CliIO, type CommandGroup, dispatch, EXIT_FAILED, processIO } from './dispatch.ts';

export const WAGGLE_COMMANDS: CommandGroup = {
  name: 'waggle',
  summary: 'Waggle on a local single-node cluster',
  commands: [
    {
      name: 'up',
      summary: 'start the local single-node cluster, build and install Waggle, print the MCP URL and a token',
      load: () => import('./up.ts'),
    },
    {
      name: 'down',
      summary: 'stop it and remove everything it created on this machine',
      load: () => import('./down.ts'),
    },
    {
      name: 'status',
      summary: 'what runs, and whether the MCP endpoint answers',
      load: () => import('./status.ts'),
    },
    {
      name: 'doctor',
      args: '[--image <rootfs.ext4> [--runtime python|node|shell]]',
      summary:
        'check this machine (root, packages, toolchains, guest images, accelerator, ports, disk) and a custom guest image',
      load: () => import('./doctor.ts'),
    },
    CLUSTER_COMMANDS,
  ],
  footer: 'pnpm cluster <command> is short for pnpm waggle cluster <command>.',
};

/** Runs `pnpm waggle` with `argv` (the arguments after the script); returns the exit code. */
export async function main(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  try {
    return await dispatch('pnpm waggle', WAGGLE_COMMANDS, argv, io);
  } catch (err) {
    io.err(`waggle: ${(err as Error).message}`);
    return EXIT_FAILED;
  }
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));
