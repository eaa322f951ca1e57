import { randomBytes } from 'node:crypto';
import type { Client } from 'ssh2';
import { GuestUnavailableError, InvalidArgumentError } from '../errors.ts';
import { CappedBuffer } from './output-buffer.ts';
import { shellQuote } from './shell-quote.ts';
import { runCommand } from './ssh-connections.ts';

export const LANGUAGES = {
  python: { interpreter: 'python3', ext: 'py' },
  node: { interpreter: 'node', ext: 'js' },
  shell: { interpreter: 'bash', ext: 'sh' },
} as const;
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
export const EXEC_DIR = '/tmp/waggle';
/** `env -i …` prefix giving code a clean, predictable environment. */
export const SANDBOX_ENV =
  `env -i HOME=${SANDBOX_USER.home} USER=${SANDBOX_USER.name} LOGNAME=${SANDBOX_USER.name} LANG=C.UTF-8 ` +
  `PATH=${SANDBOX_PATH} NODE_PATH=${SANDBOX_USER.home}/node_modules`;
/** The same environment as shell exports (no env(1) process needed). */
export const SANDBOX_EXPORTS =
  `HOME=${SANDBOX_USER.home} USER=${SANDBOX_USER.name} LOGNAME=${SANDBOX_USER.name} SHELL=/bin/sh LANG=C.UTF-8 ` +
  `PATH=${SANDBOX_PATH} NODE_PATH=${SANDBOX_USER.home}/node_modules`;
/** Runs the rest of a command line as the sandbox user. */
export const AS_SANDBOX = `setpriv --reuid=${SANDBOX_USER.uid} --regid=${SANDBOX_USER.gid} --init-groups`;

export interface ExecOptions {
  code: string;
  language: Language;
  timeoutMs: number;
  /** Per stream. */
  maxOutputBytes: number;
  /** Absolute interpreter override (WAGGLE_RUNTIME_<RT>_EXEC_COMMAND). */
  interpreter?: string;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  signal?: AbortSignal;
}

/**
 * The guest-side script: store the code (read from stdin, exactly `bytes` long) in a file, record
 * the session id (sshd makes each exec channel a session leader) so a timeout can kill every
 * process of the run, then run the file as the sandbox user from its home. Only agent-generated
 * values appear in it, each shell-quoted; the user's code is file content, never shell text.
 */
export function execScript(opts: { id: string; ext: string; bytes: number; interpreter: string }): string {
  // Every exec of a binary costs tens of milliseconds under TCG, so the script uses shell
  // builtins wherever it can: umask instead of chmod, exports instead of env(1), a background rm.
  const file = `${EXEC_DIR}/${opts.id}.${opts.ext}`;
  const pidFile = `${EXEC_DIR}/${opts.id}.pid`;
  return [
    'umask 022',
    `[ -d ${EXEC_DIR} ] || mkdir -m 1777 ${EXEC_DIR}`,
    `f=${shellQuote(file)}`,
    `head -c ${opts.bytes} > "$f" || exit 125`,
    `echo $$ > ${shellQuote(pidFile)}`,
    `cd ${SANDBOX_USER.home}`,
    `unset SSH_CLIENT SSH_CONNECTION SSH_TTY MAIL OLDPWD`,
    `export ${SANDBOX_EXPORTS}`,
    `${AS_SANDBOX} ${shellQuote(opts.interpreter)} "$f" < /dev/null`,
    'rc=$?',
    `rm -f "$f" ${shellQuote(pidFile)} > /dev/null 2>&1 &`,
    'exit $rc',
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
 * killed and the output so far is returned.
 */
export async function runGuestScript(
  client: Client,
  opts: {
    id: string;
    script: string;
    stdin?: Buffer;
    timeoutMs: number;
    maxOutputBytes: number;
    onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
    signal?: AbortSignal;
  },
): Promise<GuestRunResult> {
  const stdout = new CappedBuffer(opts.maxOutputBytes);
  const stderr = new CappedBuffer(opts.maxOutputBytes);
  const t0 = Date.now();
  let timedOut = false;
  let cancelled = false;
  const killRun = async () => {
    await runCommand(
      client,
      `sid=$(cat ${EXEC_DIR}/${opts.id}.pid 2>/dev/null) && [ -n "$sid" ] && pkill -KILL -s "$sid"; rm -f ${EXEC_DIR}/${opts.id}.*`,
    ).catch(() => undefined);
  };
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    client.exec(`sh -c ${shellQuote(opts.script)}`, (err, stream) => {
      if (err)
        return reject(new GuestUnavailableError(`cannot start a process in the guest: ${err.message}`));
      const timer = setTimeout(() => {
        timedOut = true;
        void killRun();
      }, opts.timeoutMs);
      const onAbort = () => {
        cancelled = true;
        void killRun();
      };
      if (opts.signal?.aborted) onAbort();
      else opts.signal?.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (d: Buffer) => {
        stdout.push(d);
        opts.onOutput?.('stdout', d);
      });
      stream.stderr.on('data', (d: Buffer) => {
        stderr.push(d);
        opts.onOutput?.('stderr', d);
      });
      stream.once('close', (code: number | null) => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        resolve(timedOut || cancelled ? null : code);
      });
      stream.end(opts.stdin);
    });
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

/** Runs code in the guest; a non-zero exit is a normal result, a timeout returns partial output. */
export async function execCode(client: Client, opts: ExecOptions): Promise<ExecResult> {
  const lang = LANGUAGES[opts.language];
  if (!lang) throw new InvalidArgumentError(`unknown language "${opts.language}"; use python, node or shell`);
  const id = `exec-${randomBytes(8).toString('hex')}`;
  const code = Buffer.from(opts.code, 'utf8');
  const script = execScript({
    id,
    ext: lang.ext,
    bytes: code.length,
    interpreter: opts.interpreter ?? lang.interpreter,
  });
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
