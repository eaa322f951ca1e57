/** Why an image cannot become a guest root filesystem; each says which image and what to do. */
export type ImageErrorReason =
  | 'invalid-reference'
  | 'not-allowed'
  | 'not-found'
  | 'unauthorized'
  | 'unreachable'
  | 'not-an-image'
  | 'wrong-architecture'
  | 'too-large'
  | 'missing-shell'
  | 'missing-interpreter'
  /** The node could not store it (disk full, …): not the image's fault. */
  | 'node-error';

export class ImageError extends Error {
  override readonly name = 'ImageError';
  readonly reason: ImageErrorReason;
  readonly image: string;
  constructor(reason: ImageErrorReason, image: string, message: string) {
    super(message);
    this.reason = reason;
    this.image = image;
  }
}

/**
 * Reads skopeo's error text (it has no machine-readable codes) into a reason. Only its last line
 * is read, with the image's name and registry taken out first, so a tag, a port or a digest that
 * happens to contain "404" or "tls" cannot decide the reason. Registries phrase the same failure
 * differently (distribution: `manifest unknown`, `name unknown`; Docker Hub: a 401 for a
 * repository that does not exist, so unknown repositories there read as unauthorized, as
 * `docker pull` reports them).
 */
export function skopeoFailure(image: string, registry: string, stderr: string): ImageError {
  const last = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
  const said = last.replace(/^time="[^"]*" level=\w+ msg="?/, '').replace(/"$/, '');
  const text = said.split(image).join('<image>').split(registry).join('<registry>');
  if (
    /manifest unknown|name unknown|repository name not known|status code 404\b|\b404 Not Found/i.test(text)
  ) {
    return new ImageError('not-found', image, `image "${image}" was not found in its registry (${said})`);
  }
  if (
    /unauthorized|authentication required|access denied|is denied|denied:|status code 40[13]\b|\b40[13] (?:Unauthorized|Forbidden)/i.test(
      text,
    )
  ) {
    return new ImageError(
      'unauthorized',
      image,
      `the registry refused to serve image "${image}" without valid credentials: use it through a WaggleTemplate whose imagePullSecret can read it (${said})`,
    );
  }
  if (/no image found in (?:manifest list|image index) for architecture/i.test(text)) {
    return new ImageError(
      'wrong-architecture',
      image,
      `image "${image}" has no linux/amd64 variant (the architecture of this node's microVMs)`,
    );
  }
  if (/no space left on device|read-only file system|permission denied/i.test(text)) {
    return new ImageError('node-error', image, `this node could not store image "${image}": ${said}`);
  }
  if (
    /unsupported (?:manifest )?(?:media ?type|format)|unknown media ?type|invalid manifest|unmarshal|not a (?:valid )?manifest/i.test(
      text,
    )
  ) {
    return new ImageError(
      'not-an-image',
      image,
      `"${image}" is not an OCI or Docker container image: ${said}`,
    );
  }
  // Connection failures, TLS, rate limits (toomanyrequests), registry 5xx: worth a retry.
  return new ImageError('unreachable', image, `pulling image "${image}" failed, try again later: ${said}`);
}
