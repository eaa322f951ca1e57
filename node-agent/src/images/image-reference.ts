/**
 * OCI image references as users write them (`python:3.12`, `ghcr.io/org/img@sha256:…`,
 * `127.0.0.1:5000/team/py:v1`), normalized the way Docker and containerd read them: a first
 * component without a dot, a colon or `localhost` is a Docker Hub repository, and a Docker Hub
 * repository without a slash is under `library/`.
 */
export interface ImageReference {
  /** Registry host[:port], e.g. `docker.io`, `127.0.0.1:5000`. */
  registry: string;
  /** Repository path, e.g. `library/python`, `team/py`. */
  repository: string;
  tag?: string;
  /** `sha256:<64 hex>` when pinned. */
  digest?: string;
}

export class InvalidImageReference extends Error {
  override readonly name = 'InvalidImageReference';
}

// The grammar of github.com/distribution/reference, lower-case repository components.
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;
const MAX_LENGTH = 255 + 128 + 72;

export function parseImageReference(input: string): ImageReference {
  const bad = (why: string) =>
    new InvalidImageReference(
      `image "${input}" is not a valid OCI image reference: ${why} (expected [registry/]repository[:tag][@sha256:<digest>], e.g. ghcr.io/org/python:3.12)`,
    );
  if (input.length === 0 || input.length > MAX_LENGTH) throw bad(`length must be 1–${MAX_LENGTH}`);
  if (/\s/.test(input)) throw bad('it contains whitespace');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`"${digest}" is not a sha256 digest`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`"${tag}" is not a valid tag`);
  }
  const parts = rest.split('/');
  let registry = 'docker.io';
  const first = parts[0] ?? '';
  if (
    parts.length > 1 &&
    (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))
  ) {
    if (!HOST.test(first)) throw bad(`"${first}" is not a registry host`);
    registry = first;
    parts.shift();
  }
  if (registry === 'index.docker.io') registry = 'docker.io';
  if (registry === 'docker.io' && parts.length === 1) parts.unshift('library');
  for (const p of parts) {
    if (!COMPONENT.test(p))
      throw bad(`repository component "${p}" must be lower-case letters, digits and separators`);
  }
  return {
    registry,
    repository: parts.join('/'),
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}

/** `registry/repository[:tag][@digest]`, with `latest` when neither tag nor digest was given. */
export function formatImageReference(ref: ImageReference): string {
  const tag = ref.tag ?? (ref.digest ? undefined : 'latest');
  return `${ref.registry}/${ref.repository}${tag ? `:${tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/**
 * Whether an admin's allow-list admits the image. Entries are `*` (anything), a registry
 * (`ghcr.io`), or a repository prefix matched at path boundaries (`ghcr.io/org` admits
 * `ghcr.io/org/py` but not `ghcr.io/organisation/py`; `docker.io/library/python` admits that
 * repository only). Entries are normalized like references (`python` is
 * `docker.io/library/python`).
 */
export function isImageAllowed(ref: ImageReference, allowList: readonly string[]): boolean {
  const name = `${ref.registry}/${ref.repository}`;
  return allowList.some((entry) => {
    if (entry === '*') return true;
    const registryOnly =
      !entry.includes('/') && (entry.includes('.') || entry.includes(':') || entry === 'localhost');
    const prefix = registryOnly ? entry : normalizePrefix(entry);
    return name === prefix || name.startsWith(`${prefix}/`);
  });
}

function normalizePrefix(entry: string): string {
  const r = parseImageReference(entry.replace(/\/+$/, ''));
  return `${r.registry}/${r.repository}`;
}
