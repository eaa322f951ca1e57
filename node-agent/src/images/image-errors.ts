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
  | 'missing-interpreter';

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
 * Reads skopeo's error text (it has no machine-readable codes) into a reason. Registries phrase
 * the same failure differently (distribution: `manifest unknown`, `name unknown`; Docker Hub: a
 * 401 for a repository that does not exist), so unknown repositories on Docker Hub read as
 * unauthorized, as `docker pull` reports them.
 */
export function skopeoFailure(image: string, stderr: string): ImageError {
  const text = stderr.trim().split('\n').filter(Boolean).pop() ?? stderr.trim();
  const said = text.replace(/^time="[^"]*" level=\w+ msg="?/, '').replace(/"$/, '');
  if (/manifest unknown|name unknown|not found|404/i.test(stderr)) {
    return new ImageError('not-found', image, `image "${image}" was not found in its registry (${said})`);
  }
  if (/unauthorized|authentication required|denied|401|403/i.test(stderr)) {
    return new ImageError(
      'unauthorized',
      image,
      `the registry refused to serve image "${image}" without valid credentials: give the environment a pull secret that can read it (${said})`,
    );
  }
  if (/no image found in (?:manifest list|image index) for architecture/i.test(stderr)) {
    return new ImageError(
      'wrong-architecture',
      image,
      `image "${image}" has no linux/amd64 variant (the architecture of this node's microVMs)`,
    );
  }
  if (/connection refused|no such host|i\/o timeout|network is unreachable|tls|x509|EOF/i.test(stderr)) {
    return new ImageError(
      'unreachable',
      image,
      `the registry of image "${image}" could not be reached: ${said}`,
    );
  }
  if (/unsupported|unknown media ?type|invalid|manifest/i.test(stderr)) {
    return new ImageError(
      'not-an-image',
      image,
      `"${image}" is not an OCI or Docker container image: ${said}`,
    );
  }
  return new ImageError('unreachable', image, `pulling image "${image}" failed: ${said}`);
}
