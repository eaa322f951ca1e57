import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QMP_MAX_LINE_BYTES, QmpClient, type QmpEvent } from './qmp.ts';

let dir = '';
let server: Server | undefined;

/** A fake QEMU monitor: greets, then answers each command line with `answer(cmd)`. */
async function fakeQemu(
  answer: (cmd: { execute: string; arguments?: unknown; id?: unknown }, sock: Socket) => unknown,
  greet = true,
): Promise<{ path: string; received: string[] }> {
  dir = await mkdtemp(join(tmpdir(), 'qmp-test-'));
  const path = join(dir, 'qmp.sock');
  const received: string[] = [];
  server = createServer((sock) => {
    if (greet) sock.write('{"QMP": {"version": {"qemu": {"major": 7, "minor": 2}}, "capabilities": []}}\r\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const cmd = JSON.parse(line);
        received.push(cmd.execute);
        const reply = answer(cmd, sock);
        if (reply !== undefined) sock.write(`${JSON.stringify({ ...(reply as object), id: cmd.id })}\r\n`);
        nl = buf.indexOf('\n');
      }
    });
  });
  await new Promise<void>((r) => server?.listen(path, r));
  return { path, received };
}

afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('QmpClient', () => {
  it('negotiates capabilities, matches answers to commands and delivers events', async () => {
    const { path, received } = await fakeQemu((cmd, sock) => {
      if (cmd.execute === 'stop') {
        sock.write('{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}\r\n');
        return { return: {} };
      }
      if (cmd.execute === 'query-migrate') return { return: { status: 'completed' } };
      if (cmd.execute === 'migrate') return { error: { class: 'GenericError', desc: 'no such uri' } };
      return { return: {} };
    });
    const qmp = await QmpClient.connect(path);
    const events: QmpEvent[] = [];
    qmp.onEvent((e) => events.push(e));
    await qmp.execute('stop');
    await expect(qmp.execute('query-migrate')).resolves.toEqual({ status: 'completed' });
    await expect(qmp.execute('migrate', { uri: 'x:' })).rejects.toMatchObject({
      name: 'QmpError',
      errorClass: 'GenericError',
      message: 'no such uri',
    });
    expect(received).toEqual(['qmp_capabilities', 'stop', 'query-migrate', 'migrate']);
    expect(events.map((e) => e.event)).toEqual(['STOP']);
    qmp.close();
    await expect(qmp.execute('cont')).rejects.toMatchObject({ errorClass: 'Disconnected' });
  });

  it('times out a monitor that never greets or never answers', async () => {
    const silent = await fakeQemu(() => undefined, false);
    await expect(QmpClient.connect(silent.path, { timeoutMs: 200 })).rejects.toMatchObject({
      errorClass: 'Timeout',
    });
    await new Promise((r) => server?.close(r));
    const mute = await fakeQemu((cmd) => (cmd.execute === 'qmp_capabilities' ? { return: {} } : undefined));
    const qmp = await QmpClient.connect(mute.path);
    await expect(qmp.execute('query-status', undefined, { timeoutMs: 200 })).rejects.toMatchObject({
      errorClass: 'Timeout',
    });
    qmp.close();
  });

  it('fails pending commands when QEMU goes away or sends garbage, without throwing', async () => {
    const { path } = await fakeQemu((cmd, sock) => {
      if (cmd.execute === 'quit') sock.destroy();
      if (cmd.execute === 'garbage') sock.write('not json\n');
      if (cmd.execute === 'flood') sock.write('x'.repeat(QMP_MAX_LINE_BYTES + 10));
      return cmd.execute === 'qmp_capabilities' ? { return: {} } : undefined;
    });
    const a = await QmpClient.connect(path);
    await expect(a.execute('quit')).rejects.toMatchObject({ errorClass: 'Disconnected' });
    const b = await QmpClient.connect(path);
    await expect(b.execute('garbage')).rejects.toMatchObject({ errorClass: 'Protocol' });
    const c = await QmpClient.connect(path);
    await expect(c.execute('flood')).rejects.toMatchObject({ errorClass: 'Protocol' });
  });
});
