/** API group and version shared by every Waggle resource. */
export const GROUP = 'waggle.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
