// `node test/src/loopback-proxy.ts <listen host:port> <target host:port>`: a TCP forwarder that
// exposes the gateway's ClusterIP Service on this machine's loopback (started by `pnpm waggle
// up`, stopped by `pnpm waggle down`). Only loopback listen addresses are accepted.
import { connect, createServer } from 'node:net';

const [listen, target] = process.argv.slice(2);
const split = (hp: string | undefined) => {
  const i = hp?.lastIndexOf(':') ?? -1;
  if (!hp || i < 0) throw new Error('usage: loopback-proxy.ts <listen host:port> <target host:port>');
  return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
};
const l = split(listen);
const t = split(target);
if (!/^127\.|^localhost$|^::1$/.test(l.host))
  throw new Error(`refusing to listen on ${l.host}: loopback only`);

const server = createServer((client) => {
  const upstream = connect(t.port, t.host);
  client.pipe(upstream).pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
});
server.listen(l.port, l.host);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
