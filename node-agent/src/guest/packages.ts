import { randomBytes } from 'node:crypto';
import type { Runtime } from '@waggle/crds';
import type { Client } from 'ssh2';
import { InvalidArgumentError } from '../errors.ts';
import {
  AS_SANDBOX,
  EXEC_DIR,
  GUEST_BIN,
  type GuestRunResult,
  ROOT_BIN_SELECT,
  runGuestScript,
  SANDBOX_USER,
  sandboxEnv,
} from './exec.ts';
import { shellJoin } from './shell-quote.ts';

export type PackageManager = 'pip' | 'npm' | 'apt' | 'apk';
export const MAX_PACKAGES = 50;

/**
 * Strict allowlists for package specifiers (name plus an optional version constraint). Anything
 * else — spaces, shell metacharacters, URLs, paths, options — is refused before reaching a guest.
 */
export const PACKAGE_PATTERNS: Record<PackageManager, RegExp> = {
  pip: /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?(?:(?:==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!_-]{1,50}(?:,(?:==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!_-]{1,50})*)?$/,
  npm: /^(?:@[a-z0-9][a-z0-9._-]{0,100}\/)?[a-z0-9][a-z0-9._-]{0,100}(?:@[A-Za-z0-9.^~*+_-]{1,50})?$/,
  apt: /^[a-z0-9][a-z0-9+.-]{0,100}(?:=[A-Za-z0-9.+:~-]{1,60})?$/,
  // Alpine: name (letters, digits, + . _ -) with an optional =, ~ or >= version.
  apk: /^[a-z0-9][a-z0-9+._-]{0,100}(?:(?:=|~|>=|<=|>|<)[A-Za-z0-9.+_~-]{1,60})?$/,
};

const RUNTIME_MANAGER: Record<Runtime, PackageManager> = {
  python: 'pip',
  node: 'npm',
  shell: 'apt',
};

export function managerFor(runtime: Runtime, override?: PackageManager): PackageManager {
  return override ?? RUNTIME_MANAGER[runtime];
}

/** Validates specifiers for a package manager; throws naming the first bad one. */
export function validatePackages(manager: PackageManager, packages: string[]): string[] {
  if (!Array.isArray(packages) || packages.length === 0) {
    throw new InvalidArgumentError('packages is empty; give at least one package name, e.g. ["requests"]');
  }
  if (packages.length > MAX_PACKAGES) {
    throw new InvalidArgumentError(`at most ${MAX_PACKAGES} packages per call (got ${packages.length})`);
  }
  for (const pkg of packages) {
    if (typeof pkg !== 'string' || !PACKAGE_PATTERNS[manager].test(pkg)) {
      throw new InvalidArgumentError(
        `invalid ${manager} package ${JSON.stringify(pkg)}: use a plain package name with an optional version ` +
          `(e.g. ${manager === 'npm' ? '"lodash@4.17.21"' : manager === 'apt' || manager === 'apk' ? '"jq"' : '"pandas==2.2.3"'}); ` +
          'options, URLs, paths and shell characters are not allowed',
      );
    }
  }
  return packages;
}

const VENV = `${SANDBOX_USER.home}/.venv`;

/**
 * The guest-side install script (run as root). Package names are validated and quoted; nothing
 * else varies. Root calls every binary by absolute path; pip and npm run as the sandbox user with
 * its own environment and process limit.
 */
export function installScript(
  id: string,
  manager: PackageManager,
  packages: string[],
  path?: string,
): string {
  const pkgs = shellJoin(packages);
  const setup = [
    ROOT_BIN_SELECT,
    `[ -d ${EXEC_DIR} ] || ${GUEST_BIN.mkdir} -p -m 0711 ${EXEC_DIR} || exit 125`,
    `echo $$ > ${EXEC_DIR}/${id}.pid`,
  ];
  const head = [...setup, `cd ${SANDBOX_USER.home}`];
  const sandbox = `${AS_SANDBOX} ${sandboxEnv(path)}`;
  switch (manager) {
    case 'pip':
      // Prefer an existing venv; else try a user install; when PEP 668 refuses it (Debian's
      // python is "externally managed"), create the venv that later execs put first on PATH.
      return [
        ...head,
        `if [ -x ${VENV}/bin/pip ]; then ${sandbox} ${VENV}/bin/pip install --disable-pip-version-check --no-input ${pkgs}; exit $?; fi`,
        `out=$(${sandbox} python3 -m pip install --user --disable-pip-version-check --no-input ${pkgs} 2>&1); rc=$?`,
        'if [ $rc -eq 0 ]; then printf "%s\\n" "$out"; exit 0; fi',
        'case "$out" in *externally-managed-environment*) ;; *) printf "%s\\n" "$out" >&2; exit $rc ;; esac',
        `echo "waggle: system pip is externally managed (PEP 668); installing into ${VENV}"`,
        `${sandbox} python3 -m venv --system-site-packages ${VENV} || exit $?`,
        `${sandbox} ${VENV}/bin/pip install --disable-pip-version-check --no-input ${pkgs}`,
      ].join('\n');
    case 'npm':
      return [...head, `${sandbox} npm install --no-audit --no-fund --no-update-notifier ${pkgs}`].join('\n');
    case 'apt':
      return [
        ...setup,
        'cd /',
        'export DEBIAN_FRONTEND=noninteractive',
        `${GUEST_BIN.aptGet} update -qq || exit $?`,
        `${GUEST_BIN.aptGet} install -y -qq --no-install-recommends ${pkgs}`,
      ].join('\n');
    case 'apk':
      return [...setup, 'cd /', `${GUEST_BIN.apk} add --no-cache ${pkgs}`].join('\n');
  }
}

/** Installs packages in the guest with the runtime's package manager. */
export async function installPackages(
  client: Client,
  opts: {
    runtime: Runtime;
    packages: string[];
    manager?: PackageManager;
    timeoutMs: number;
    maxOutputBytes: number;
    signal?: AbortSignal;
    onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
    /** The sandbox's PATH (default SANDBOX_PATH). */
    path?: string;
  },
): Promise<GuestRunResult & { manager: PackageManager }> {
  const manager = managerFor(opts.runtime, opts.manager);
  validatePackages(manager, opts.packages);
  const id = `install-${randomBytes(8).toString('hex')}`;
  const result = await runGuestScript(client, {
    id,
    script: installScript(id, manager, opts.packages, opts.path),
    timeoutMs: opts.timeoutMs,
    maxOutputBytes: opts.maxOutputBytes,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onOutput ? { onOutput: opts.onOutput } : {}),
  });
  return { ...result, manager };
}
