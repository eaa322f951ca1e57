import type { IncomingMessage } from 'node:http';
import { PreviewService } from '../services/previews.ts';
import type { PreviewTarget } from './preview-proxy.ts';
import { PreviewRefusal } from './preview-proxy.ts';
import type { RequestAuthenticator } from './request-auth.ts';

const PUBLIC = /^\/preview\/([^/?#]+)(\/[^?#]*)?(\?.*)?$/;
const PRIVATE = /^\/environments\/([^/?#]+)\/ports\/([^/?#]+)(\/[^?#]*)?(\?.*)?$/;

/**
 * Maps a preview URL to its environment and port:
 *  - `/preview/<token>/…`: public, anyone with the URL until it expires;
 *  - `/environments/<id>/ports/<port>/…`: private, the owner's bearer token (as for /mcp).
 * A URL without the trailing slash after the prefix is redirected to it, so that relative links
 * in the served pages resolve under the prefix.
 */
export function previewResolver(
  previews: PreviewService,
  authenticate: RequestAuthenticator,
): (req: IncomingMessage) => Promise<PreviewTarget> {
  return async (req) => {
    const url = req.url ?? '/';
    const pub = PUBLIC.exec(url);
    if (pub) {
      const [, token = '', rest, query = ''] = pub;
      const prefix = PreviewService.publicPath(token).replace(/\/$/, '');
      if (rest === undefined) throw new PreviewRefusal(308, 'moved', `${prefix}/${query}`);
      const found = previews.resolvePublic(token);
      if ('refused' in found) {
        throw found.refused === 'expired'
          ? new PreviewRefusal(410, 'this preview URL has expired; call expose_port again for a new one')
          : new PreviewRefusal(
              404,
              'no such preview URL: it was never issued, was unexposed, or its environment is gone',
            );
      }
      return {
        env: found.env,
        port: found.port,
        prefix,
        path: `${rest}${query}`,
        watch: (onRevoked) => previews.watch(found.env, found.port, found.tokenSha256, onRevoked),
      };
    }
    const priv = PRIVATE.exec(url);
    if (priv) {
      const [, envId = '', portText = '', rest, query = ''] = priv;
      const port = Number(portText);
      if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65_535) {
        throw new PreviewRefusal(400, `"${portText}" is not a TCP port; use a number from 1 to 65535`);
      }
      const prefix = PreviewService.privatePath(envId, port).replace(/\/$/, '');
      const caller = await authenticate(req.headers, req.socket.remoteAddress);
      if (rest === undefined) throw new PreviewRefusal(308, 'moved', `${prefix}/${query}`);
      const env = previews.resolvePrivate(caller, envId, port);
      return {
        env,
        port,
        prefix,
        path: `${rest}${query}`,
        watch: (onRevoked) => previews.watch(env, port, undefined, onRevoked),
      };
    }
    throw new PreviewRefusal(404, 'not a preview URL');
  };
}
