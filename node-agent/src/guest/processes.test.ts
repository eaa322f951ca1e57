import { EventEmitter } from 'node:events';
import type { Client } from 'ssh2';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, ProcessNotFoundError, ResourceExhaustedError } from '../errors.ts';
import { createLogger } from '../logger.ts';
import { ProcessRegistry } from './processes.ts';

const log = createLogger({ level: 'silent' });

/** An exec channel as ssh2 hands it out, driven by the test. */
class FakeChannel extends EventEmitter {
  readonly stderr = new EventEmitter();
  stdin: Buffer | undefined;
  closed = false;
  readonly command: string;
  constructor(command: string) {
    super();
    this.command = command;
  }
  end(stdin?: Buffer) {
    this.stdin = stdin;
  }
  destroy() {
    this.close(undefined);
  }
  out(s: string) {
    this.emit('data', Buffer.from(s));
  }
  err(s: string) {
    this.stderr.emit('data', Buffer.from(s));
  }
  close(code: number | null | undefined, signal?: string) {
    if (this.closed) return;
    this.closed = true;
    this.emit('close', code, signal);
  }
}

/**
 * A connection whose exec channels the test drives. The kill script (it calls pkill) closes the
 * channel of the run it names, as killing the session in the guest would.
 */
function fakeClient() {
  const runs = new Map<string, FakeChannel>();
  const kills: string[] = [];
  const client = {
    exec(command: string, cb: (err: Error | undefined, ch: FakeChannel) => void) {
      const ch = new FakeChannel(command);
      const killed = /\$WB\/pkill/.test(command) && /exec\/(proc-[0-9a-f]+)\.pid/.exec(command)?.[1];
      if (killed) {
        kills.push(killed);
        setImmediate(() => {
          runs.get(killed)?.close(null, 'KILL');
          ch.close(0);
        });
      } else {
        const id = /exec\/(proc-[0-9a-f]+)\.pid/.exec(command)?.[1];
        if (id) runs.set(id, ch);
      }
      setImmediate(() => cb(undefined, ch));
      return true;
    },
  };
  return { client: client as unknown as Client, runs, kills };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('ProcessRegistry', () => {
  it('starts a process, reads its output incrementally with a cursor, and reports its exit', async () => {
    const reg = new ProcessRegistry({ log, ringBytes: 1 << 20 });
    const { client, runs } = fakeClient();
    const { processId, startedAt } = await reg.start('vm1', client, { code: 'print(1)', language: 'python' });
    expect(processId).toMatch(/^proc-[0-9a-f]{16}$/);
    expect(Date.parse(startedAt)).toBeGreaterThan(0);
    const ch = runs.get(processId) as FakeChannel;
    expect(ch.stdin?.toString()).toBe('print(1)');
    expect(ch.command).toContain('python3');

    ch.out('one\n');
    ch.err('oops\n');
    const first = await reg.read('vm1', processId, { since: 0, maxBytes: 1000 });
    expect(first).toMatchObject({
      stdout: 'one\n',
      stderr: 'oops\n',
      nextSince: 9,
      running: true,
      killed: false,
    });
    expect(first.exitCode).toBeUndefined();

    ch.out('two\n');
    ch.close(3);
    await tick();
    const second = await reg.read('vm1', processId, { since: first.nextSince, maxBytes: 1000 });
    expect(second).toMatchObject({
      stdout: 'two\n',
      stderr: '',
      nextSince: 13,
      running: false,
      exitCode: 3,
      killed: false,
      stdoutBytes: 8,
      stderrBytes: 5,
      message: 'exited with code 3',
    });
    expect(second.endedAt).toBeDefined();
    // Kill of an exited process: nothing to do, says how it ended.
    expect(await reg.kill('vm1', processId)).toEqual({ wasRunning: false, exitCode: 3 });
  });

  it('long-polls: a read with nothing new waits for output, the exit, the wait or the caller', async () => {
    const reg = new ProcessRegistry({ log, ringBytes: 1 << 20 });
    const { client, runs } = fakeClient();
    const { processId } = await reg.start('vm1', client, { code: 'x', language: 'shell' });
    const ch = runs.get(processId) as FakeChannel;

    const t0 = Date.now();
    const waiting = reg.read('vm1', processId, { since: 0, maxBytes: 100, waitMs: 10_000 });
    setTimeout(() => ch.out('late\n'), 50);
    expect(await waiting).toMatchObject({ stdout: 'late\n', running: true });
    expect(Date.now() - t0).toBeLessThan(5_000);

    const short = await reg.read('vm1', processId, { since: 5, maxBytes: 100, waitMs: 30 });
    expect(short).toMatchObject({ stdout: '', nextSince: 5, running: true });

    const ac = new AbortController();
    const cancelled = reg.read('vm1', processId, {
      since: 5,
      maxBytes: 100,
      waitMs: 10_000,
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(), 20);
    expect(await cancelled).toMatchObject({ stdout: '', running: true });

    const exit = reg.read('vm1', processId, { since: 5, maxBytes: 100, waitMs: 10_000 });
    setTimeout(() => ch.close(0), 20);
    expect(await exit).toMatchObject({ running: false, exitCode: 0 });
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('kills a running process through the kill script and marks it killed', async () => {
    const reg = new ProcessRegistry({ log, ringBytes: 1 << 20 });
    const { client, kills } = fakeClient();
    const { processId } = await reg.start('vm1', client, { code: 'sleep 600', language: 'shell' });
    const waiting = reg.read('vm1', processId, { since: 0, maxBytes: 100, waitMs: 10_000 });
    expect(await reg.kill('vm1', processId)).toEqual({ wasRunning: true });
    expect(kills).toEqual([processId]);
    expect(await waiting).toMatchObject({ running: false, killed: true, message: 'stopped by KillProcess' });
    expect(await reg.kill('vm1', processId)).toEqual({ wasRunning: false });
  });

  it('marks a process whose channel drops as killed, says why, and asks for the rest to be stopped', async () => {
    const { client, runs, kills } = fakeClient();
    const reconnected: string[] = [];
    const reg = new ProcessRegistry({
      log,
      ringBytes: 1 << 20,
      reconnect: async (vmId) => {
        reconnected.push(vmId);
        return client;
      },
    });
    const { processId } = await reg.start('vm1', client, { code: 'x', language: 'shell' });
    (runs.get(processId) as FakeChannel).close(undefined); // neither exit status nor signal
    await tick();
    const r = await reg.read('vm1', processId, { since: 0, maxBytes: 100 });
    expect(r).toMatchObject({ running: false, killed: true });
    expect(r.message).toMatch(/connection to the guest was lost while the process ran/);
    // What is left of it in the guest is stopped over a new connection.
    await tick();
    await tick();
    expect(reconnected).toEqual(['vm1']);
    expect(kills).toEqual([processId]);
  });

  it('names the known processes for an unknown id, and refuses a cursor past the end', async () => {
    const reg = new ProcessRegistry({ log, ringBytes: 1 << 20 });
    const none = await reg.read('vm1', 'proc-0000000000000000', { since: 0, maxBytes: 1 }).catch((e) => e);
    expect(none).toBeInstanceOf(ProcessNotFoundError);
    expect(none.message).toBe(
      'no background process "proc-0000000000000000" in this VM; none has been started in it since this agent started',
    );
    const { client, runs } = fakeClient();
    const a = await reg.start('vm1', client, { code: 'x', language: 'shell' });
    const b = await reg.start('vm1', client, { code: 'y', language: 'shell' });
    (runs.get(b.processId) as FakeChannel).close(1);
    await tick();
    const err = await reg.kill('vm1', 'proc-0000000000000000').catch((e) => e);
    expect(err).toBeInstanceOf(ProcessNotFoundError);
    expect(err.message).toBe(
      `no background process "proc-0000000000000000" in this VM; its processes: ${a.processId} (running), ` +
        `${b.processId} (exited 1)`,
    );
    expect(err.knownIds).toEqual([a.processId, b.processId]);
    // Another VM's process is unknown here.
    expect(await reg.read('vm2', a.processId, { since: 0, maxBytes: 1 }).catch((e) => e)).toBeInstanceOf(
      ProcessNotFoundError,
    );
    const past = await reg.read('vm1', a.processId, { since: 5, maxBytes: 1 }).catch((e) => e);
    expect(past).toBeInstanceOf(InvalidArgumentError);
    expect(past.message).toMatch(/since 5 is past the end of the output \(0 bytes so far\)/);
  });

  it('bounds running processes and records; forgotten ones are named as such', async () => {
    const reg = new ProcessRegistry({ log, ringBytes: 64, limits: { maxRunning: 2, maxRecords: 3 } });
    const { client, runs } = fakeClient();
    const p1 = await reg.start('vm1', client, { code: 'x', language: 'shell' });
    const p2 = await reg.start('vm1', client, { code: 'x', language: 'shell' });
    const full = await reg.start('vm1', client, { code: 'x', language: 'shell' }).catch((e) => e);
    expect(full).toBeInstanceOf(ResourceExhaustedError);
    expect(full.message).toMatch(/2 background processes already run in this VM.*KillProcess/);
    // Another VM has its own limit.
    await reg.start('vm2', client, { code: 'x', language: 'shell' });
    (runs.get(p1.processId) as FakeChannel).close(0);
    (runs.get(p2.processId) as FakeChannel).close(0);
    await tick();
    const p3 = await reg.start('vm1', client, { code: 'x', language: 'shell' });
    const p4 = await reg.start('vm1', client, { code: 'x', language: 'shell' });
    // Four records: the oldest finished one (p1) is forgotten.
    expect(reg.list('vm1').map((p) => p.processId)).toEqual([p2.processId, p3.processId, p4.processId]);
    const gone = await reg.read('vm1', p1.processId, { since: 0, maxBytes: 1 }).catch((e) => e);
    expect(gone).toMatchObject({ reason: 'forgotten' });
    expect(gone.message).toMatch(/has ended and was forgotten: at most 3 processes are kept per VM/);
  });

  it('forgets a destroyed VM: its records go, waiting reads end at once', async () => {
    const reg = new ProcessRegistry({ log, ringBytes: 64 });
    const { client } = fakeClient();
    const { processId } = await reg.start('vm1', client, { code: 'x', language: 'shell' });
    const waiting = reg.read('vm1', processId, { since: 0, maxBytes: 100, waitMs: 20_000 });
    const t0 = Date.now();
    reg.forget('vm1');
    expect(await waiting).toMatchObject({ running: false, killed: true, message: 'its VM was destroyed' });
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(reg.list('vm1')).toEqual([]);
    expect(await reg.read('vm1', processId, { since: 0, maxBytes: 1 }).catch((e) => e)).toBeInstanceOf(
      ProcessNotFoundError,
    );
  });

  it('fails the start when the channel cannot be opened, and keeps no record', async () => {
    const reg = new ProcessRegistry({ log, ringBytes: 64 });
    const client = {
      exec(_c: string, cb: (err: Error) => void) {
        setImmediate(() => cb(new Error('channel open failure')));
        return true;
      },
    } as unknown as Client;
    await expect(reg.start('vm1', client, { code: 'x', language: 'shell' })).rejects.toThrow(
      /cannot open an SSH channel: channel open failure/,
    );
    expect(reg.list('vm1')).toEqual([]);
  });
});
