/** API group and version shared by every Waggle resource. */
export const GROUP = 'waggle.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/**
 * Activity recording for idle expiry: the MCP gateway writes this annotation (RFC 3339) on a
 * WaggleEnvironment when it is used, at most once per interval (default 30 s) per environment,
 * not once per call. Annotations do not bump `metadata.generation` and need no status
 * permission; the operator owns status and mirrors the time into `status.lastActivityTime` and
 * `status.expiresAt`. With the throttle, the idle timeout can fire up to one interval early for
 * an environment used continuously — a bounded, documented slack.
 */
export const LAST_ACTIVITY_ANNOTATION = 'waggle.dev/last-activity';
/**
 * The operator's finalizer on WaggleEnvironments: the VM is destroyed before the object goes.
 * The gateway sets it when it creates an environment (one write less on every create); the
 * operator adds it to environments made any other way.
 */
export const ENVIRONMENT_FINALIZER = 'waggle.dev/vm-cleanup';
/** Label on environments made through the gateway: a hash of the caller's identity. */
export const CALLER_LABEL = 'waggle.dev/caller';
/** Annotation with the caller's readable identity (e.g. system:serviceaccount:team-a:agent). */
export const CALLER_ANNOTATION = 'waggle.dev/caller-name';
/**
 * Ports of an environment reachable through the gateway's preview URLs: a JSON list written only
 * by the gateway (`[{"port":8000,"public":true,"tokenSha256":"…","expiresAt":"…","createdAt":"…"}]`).
 * A public entry holds the SHA-256 of its URL token, never the token itself.
 */
export const EXPOSED_PORTS_ANNOTATION = 'waggle.dev/exposed-ports';
