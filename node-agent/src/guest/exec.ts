import { randomBytes } from 'node:crypto';
import type { Runtime } from '@waggle/crds';
import type { Client } from 'ssh2';
import { GuestUnavailableError, InvalidArgumentError } from '../errors.ts';
import { CappedBuffer } from './output-buffer.ts';
import { shellQuote } from './shell-quote.ts';
import { openExec, runCommand } from './ssh-connections.ts';

export const LANGUAGES = {
  python: { interpreter: 'python3', ext: 'py' },
  node: { interpreter: 'node', ext: 'js' },
  shell: { interpreter: 'bash', ext: 'sh' },
} as const satisfies Record<Runtime, { interpreter: string; ext: string }>;
export type Language = keyof typeof LANGUAGES;

export const SANDBOX_USER = { name: 'sandbox', uid: 1000, gid: 1000, home: '/home/sandbox' } as const;
/** PATH for code: the sandbox's venv and local installs come first, so installed packages win. */
export const SANDBOX_PATH = [
  `${SANDBOX_USER.home}/.venv/bin`,
  `${SANDBOX_USER.home}/.local/bin`,
  `${SANDBOX_USER.home}/node_modules/.bin`,
  '/usr/local/bin',
  '/usr/bin',
  '/bin',
].join(':');
/**
 * Where root's helpers are: Waggle's toolbox in guests from OCI images (`/.waggle/bin`, root's,
 * added by the node's image store: docs/adr/0015), else the built-in Debian image's `/usr/bin`
 * (it has no toolbox; VMs booted before the toolbox existed neither). Every root script starts
 * with this line; GUEST_BIN's helpers are named through `$WB`. A builtin test, no exec.
 */
export const ROOT_BIN_SELECT = 'WB=/.waggle/bin; [ -x $WB/setpriv ] || WB=/usr/bin';
/**
 * Absolute paths of the guest binaries that run as root (after ROOT_BIN_SELECT). Root never runs
 * anything by name: PATH in an exec script is the sandbox's, whose first entries the sandbox
 * user can write.
 */
export const GUEST_BIN = {
  sh: '/bin/sh',
  head: '$WB/head',
  mkdir: '$WB/mkdir',
  rm: '$WB/rm',
  prlimit: '$WB/prlimit',
  setpriv: '$WB/setpriv',
  pkill: '$WB/pkill',
  env: '$WB/env',
  aptGet: '/usr/bin/apt-get',
  apk: '/sbin/apk',
} as const;
/**
 * Where exec scripts keep the code and the pid of each run: root-owned, 0711 (the sandbox user can
 * read a code file it is given, but not list, create or replace anything). /run/waggle is root's
 * (0755, made by the guest init); /tmp would let the sandbox plant files or symlinks root then writes.
 */
export const EXEC_DIR = '/run/waggle/exec';
/**
 * RLIMIT_NPROC for everything run as the sandbox user: a fork bomb stops at this many processes of
 * the user, while root (sshd, the timeout kill) is not limited. 512, not more: a 512 MiB guest with
 * one vCPU under TCG still answers with 512 bombing processes, with 1024 it did not until the kill.
 */
export const SANDBOX_NPROC = 512;
/** A PATH entry an image may add: absolute, and nothing a shell would read as more than a word. */
const IMAGE_PATH_ENTRY = /^\/[A-Za-z0-9._/+-]*$/;
/**
 * PATH for code in a VM of an OCI image: the sandbox's own entries first (what it installs wins),
 * then the image's `PATH` (e.g. /opt/conda/bin), then the usual system directories. Entries that
 * are not plain absolute paths are dropped (the image config is not trusted text).
 */
export function sandboxPath(imagePath: readonly string[] = []): string {
  const own = SANDBOX_PATH.split(':');
  const entries = [...own.slice(0, 3), ...imagePath.filter((p) => IMAGE_PATH_ENTRY.test(p)), ...own.slice(3)];
  return [...new Set(entries)].join(':');
}
/** `env -i …` prefix giving code a clean, predictable environment. */
export const sandboxEnv = (path = SANDBOX_PATH) =>
  `${GUEST_BIN.env} -i HOME=${SANDBOX_USER.home} USER=${SANDBOX_USER.name} LOGNAME=${SANDBOX_USER.name} LANG=C.UTF-8 ` +
  `PATH=${shellQuote(path)} NODE_PATH=${SANDBOX_USER.home}/node_modules`;
export const SANDBOX_ENV = sandboxEnv();
/** The same environment as shell exports (no env(1) process needed). */
export const sandboxExports = (path = SANDBOX_PATH) =>
  `HOME=${SANDBOX_USER.home} USER=${SANDBOX_USER.name} LOGNAME=${SANDBOX_USER.name} SHELL=/bin/sh LANG=C.UTF-8 ` +
  `PATH=${shellQuote(path)} NODE_PATH=${SANDBOX_USER.home}/node_modules`;
export const SANDBOX_EXPORTS = sandboxExports();
/**
 * Runs the rest of a command line as the sandbox user, with the sandbox's process limit, no
 * supplementary groups and no_new_privs. An OCI image may have its own user with uid 1000 (`node`,
 * `ubuntu`, a devcontainer's `vscode`) in groups such as `disk` or `docker`, or allowed to sudo:
 * the groups are not taken over, and no setuid program (sudo, su) can raise the sandbox's
 * privileges again.
 */
export const AS_SANDBOX =
  `${GUEST_BIN.prlimit} --nproc=${SANDBOX_NPROC}:${SANDBOX_NPROC} ` +
  `${GUEST_BIN.setpriv} --reuid=${SANDBOX_USER.uid} --regid=${SANDBOX_USER.gid} --clear-groups --no-new-privs`;
/** How long the kill of a timed-out run may take before its channel is closed regardless. */
const KILL_GRACE_MS = 10_000;

/** Runs per connection whose channel closed: their pid files go with the next exec script. */
const finishedRuns = new WeakMap<Client, Set<string>>();
const takeFinished = (client: Client): string[] => {
  const ids = [...(finishedRuns.get(client) ?? [])].slice(0, 64);
  for (const id of ids) finishedRuns.get(client)?.delete(id);
  return ids;
};

export interface ExecOptions {
  code: string;
  language: Language;
  timeoutMs: number;
  /** Per stream. */
  maxOutputBytes: number;
  /** Absolute interpreter override (WAGGLE_RUNTIME_<RT>_EXEC_COMMAND). */
  interpreter?: string;
  /** The sandbox's PATH (`sandboxPath`; default SANDBOX_PATH). */
  path?: string;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  signal?: AbortSignal;
}

/**
 * The guest-side script: store the code (read from stdin, exactly `bytes` long) in a file, record
 * the session id (sshd makes each exec channel a session leader) so a timeout can kill every
 * process of the run, then run the file as the sandbox user from its home. Only agent-generated
 * values appear in it, each shell-quoted; the user's code is file content, never shell text.
 * Everything root runs is called by absolute path (PATH is the sandbox's once exported), and the
 * files root writes live in the root-only EXEC_DIR.
 *
 * The pid file outlives the script: processes the code left in the background (`:|:&` returns
 * at once) can hold the channel open, and the timeout must still find their session. It is
 * removed by a later script (`finished`: runs whose channel has closed) or by the kill.
 */
export function execScript(opts: {
  id: string;
  ext: string;
  bytes: number;
  interpreter: string;
  finished?: string[];
  /** The sandbox's PATH (default SANDBOX_PATH). */
  path?: string;
}): string {
  // Every exec of a binary costs tens of milliseconds under TCG, so the script uses shell
  // builtins wherever it can: umask instead of chmod, exports instead of env(1), a background rm.
  const file = `${EXEC_DIR}/${opts.id}.${opts.ext}`;
  const pidFile = `${EXEC_DIR}/${opts.id}.pid`;
  const stale = (opts.finished ?? []).map((id) => ` ${shellQuote(`${EXEC_DIR}/${id}.pid`)}`).join('');
  return [
    ROOT_BIN_SELECT,
    'umask 022',
    `[ -d ${EXEC_DIR} ] || ${GUEST_BIN.mkdir} -p -m 0711 ${EXEC_DIR} || exit 125`,
    `f=${shellQuote(file)}`,
    `${GUEST_BIN.head} -c ${opts.bytes} > "$f" || exit 125`,
    `echo $$ > ${shellQuote(pidFile)}`,
    `cd ${SANDBOX_USER.home}`,
    `unset SSH_CLIENT SSH_CONNECTION SSH_TTY MAIL OLDPWD`,
    `export ${sandboxExports(opts.path)}`,
    `${AS_SANDBOX} ${shellQuote(opts.interpreter)} "$f" < /dev/null`,
    'rc=$?',
    `${GUEST_BIN.rm} -f "$f"${stale} > /dev/null 2>&1 &`,
    'exit $rc',
  ].join('\n');
}

/**
 * The root command that ends a run: stop every process of its session (SIGSTOP, repeated until
 * none is left running: a stopped process cannot fork, and the sandbox's nproc limit bounds how
 * many there are), then SIGKILL them all and remove the run's files. Killing a fork bomb without
 * stopping it first only makes room for new forks.
 */
export function killScript(id: string): string {
  const k = GUEST_BIN.pkill;
  return [
    ROOT_BIN_SELECT,
    `read sid < ${EXEC_DIR}/${id}.pid`,
    'if [ -n "$sid" ]; then',
    `  i=0; while ${k} -STOP -s "$sid" --runstates R,S,D && [ $i -lt 100 ]; do i=$((i + 1)); done`,
    `  i=0; while ${k} -KILL -s "$sid" && [ $i -lt 20 ]; do i=$((i + 1)); done`,
    'fi',
    `${GUEST_BIN.rm} -f ${EXEC_DIR}/${id}.*`,
  ].join('\n');
}

export interface GuestRunResult {
  stdout: string;
  stderr: string;
  /** null when the process was killed (timeout, cancellation). */
  exitCode: number | null;
  timedOut: boolean;
  cancelled: boolean;
  durationMs: number;
  stdoutBytes: number;
  stderrBytes: number;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}
export type ExecResult = GuestRunResult;

/**
 * Runs a guest-side script (which must write its shell pid to `<EXEC_DIR>/<id>.pid`) on its own
 * channel, collecting capped output; on timeout or abort every process of that SSH session is
 * killed and the output so far is returned. A channel or connection that fails while the script
 * runs rejects with GuestUnavailableError.
 */
export async function runGuestScript(
  client: Client,
  opts: {
    id: string;
    script: string;
    stdin?: Buffer;
    /** Undefined: no timeout (a background process runs until it exits or `signal` aborts). */
    timeoutMs: number | undefined;
    maxOutputBytes: number;
    onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
    signal?: AbortSignal;
    /** Called once the script's channel is open and its stdin sent. */
    onStarted?: () => void;
  },
): Promise<GuestRunResult> {
  const stdout = new CappedBuffer(opts.maxOutputBytes);
  const stderr = new CappedBuffer(opts.maxOutputBytes);
  const t0 = Date.now();
  let timedOut = false;
  let cancelled = false;
  const stream = await openExec(client, `${GUEST_BIN.sh} -c ${shellQuote(opts.script)}`);
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    let settled = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const cleanup = () => {
      clearTimeout(timer);
      clearTimeout(graceTimer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const finish = (code: number | null) => {
      if (settled) return;
      settled = true;
      cleanup();
      // A killed run's files are gone with the kill; a finished one's pid file goes later.
      if (!timedOut && !cancelled) {
        const set = finishedRuns.get(client) ?? new Set<string>();
        finishedRuns.set(client, set.add(opts.id));
      }
      resolve(timedOut || cancelled ? null : code);
    };
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      cleanup();
      stream.destroy();
      reject(new GuestUnavailableError(message));
    };
    // The kill runs as root on its own channel; if the run's channel is still open after it (the
    // guest is too busy, or the kill could not start), the channel is closed here regardless.
    const killRun = () => {
      if (graceTimer) return;
      graceTimer = setTimeout(() => {
        stream.destroy();
        finish(null);
      }, KILL_GRACE_MS);
      void runCommand(client, killScript(opts.id), undefined, { timeoutMs: KILL_GRACE_MS }).catch(
        () => undefined,
      );
    };
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            killRun();
          }, opts.timeoutMs);
    const onAbort = () => {
      cancelled = true;
      killRun();
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    stream.on('error', (err: Error) => fail(`the guest process's SSH channel failed: ${err.message}`));
    stream.stderr.on('error', (err: Error) => fail(`the guest process's SSH channel failed: ${err.message}`));
    stream.on('data', (d: Buffer) => {
      stdout.push(d);
      opts.onOutput?.('stdout', d);
    });
    stream.stderr.on('data', (d: Buffer) => {
      stderr.push(d);
      opts.onOutput?.('stderr', d);
    });
    stream.once('close', (code: number | null | undefined, signal?: string) => {
      // Neither an exit status nor a signal: the connection dropped under the channel.
      if (code == null && !signal && !timedOut && !cancelled) {
        return fail('the SSH connection to the guest dropped while the process ran');
      }
      finish(code ?? null);
    });
    stream.end(opts.stdin);
    opts.onStarted?.();
  });
  return {
    stdout: stdout.text(),
    stderr: stderr.text(),
    exitCode,
    timedOut,
    cancelled,
    durationMs: Date.now() - t0,
    stdoutBytes: stdout.totalBytes,
    stderrBytes: stderr.totalBytes,
    stdoutTruncated: stdout.truncated,
    stderrTruncated: stderr.truncated,
  };
}

/**
 * The run id, guest script and stdin that run `code` on a connection (execute and background
 * processes alike): the id is `<prefix>-<16 hex digits>`, also the name of its files in EXEC_DIR.
 */
export function codeRun(
  client: Client,
  opts: { code: string; language: Language; interpreter?: string; prefix?: string; path?: string },
): { id: string; script: string; stdin: Buffer } {
  const lang = LANGUAGES[opts.language];
  if (!lang) throw new InvalidArgumentError(`unknown language "${opts.language}"; use python, node or shell`);
  const id = `${opts.prefix ?? 'exec'}-${randomBytes(8).toString('hex')}`;
  const code = Buffer.from(opts.code, 'utf8');
  const script = execScript({
    id,
    ext: lang.ext,
    bytes: code.length,
    interpreter: opts.interpreter ?? lang.interpreter,
    finished: takeFinished(client),
    ...(opts.path ? { path: opts.path } : {}),
  });
  return { id, script, stdin: code };
}

/** Runs code in the guest; a non-zero exit is a normal result, a timeout returns partial output. */
export async function execCode(client: Client, opts: ExecOptions): Promise<ExecResult> {
  const { id, script, stdin: code } = codeRun(client, opts);
  const result = await runGuestScript(client, {
    id,
    script,
    stdin: code,
    timeoutMs: opts.timeoutMs,
    maxOutputBytes: opts.maxOutputBytes,
    ...(opts.onOutput ? { onOutput: opts.onOutput } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (result.exitCode === 125 && result.stdoutBytes === 0) {
    throw new GuestUnavailableError(`could not store the code in the guest: ${result.stderr.trim()}`);
  }
  return result;
}
