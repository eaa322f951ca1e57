import { createServer, type Http2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { ConnectError } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Code,
  classifyNodeAgentError,
  createNodeAgentClient,
  FileErrorKind,
  type NodeAgentClient,
  type NodeAgentFailure,
  NodeAgentService,
  ProcessNotFoundReason,
} from '../client.ts';
import {
  GuestFileError,
  GuestPortClosedError,
  GuestUnavailableError,
  InvalidArgumentError,
  ProcessNotFoundError,
  ResourceExhaustedError,
  VMBootError,
  VMExitedError,
  VMNotFoundError,
  VMSuspendedError,
} from '../errors.ts';
import { VMSuspendedDetailSchema } from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import { edge, toConnectError } from './connect-errors.ts';

// Domain errors thrown by handlers leave through the agent's edge and are read back by the
// client's classification: the wire contract between node-agent and its consumers.
const THROWN: Record<string, Error> = {
  'file-missing': new GuestFileError(
    'not_found',
    '/home/sandbox/missing',
    '/home/sandbox/missing does not exist',
  ),
  'file-dir': new GuestFileError('is_directory', '/tmp', '/tmp is a directory'),
  'file-big': new GuestFileError('too_large', '/tmp/big', '/tmp/big is 20 bytes; the read limit is 10 bytes'),
  'file-link': new GuestFileError('outside_sandbox', '/home/sandbox/s', 'leads outside the sandbox'),
  'file-denied': new GuestFileError('permission_denied', '/root/x', 'permission denied: /root/x'),
  'file-failed': new GuestFileError('failed', '/tmp/y', 'could not read /tmp/y'),
  process: new ProcessNotFoundError('no background process "p9"', 'forgotten', ['p10', 'p11']),
  port: new GuestPortClosedError(8000, 'nothing is listening on port 8000'),
  exited: new VMExitedError('vm-1', 'QEMU exited (killed by SIGKILL)'),
  'no-vm': new VMNotFoundError('vm-2'),
  full: new ResourceExhaustedError('all 4 VM slots are in use'),
  invalid: new InvalidArgumentError('path must not be empty'),
  guest: new GuestUnavailableError('SFTP failed'),
  boot: new VMBootError('the guest did not come up'),
  suspended: new VMSuspendedError('vm-3'),
};

let url = '';
let client: NodeAgentClient;
let stop: () => Promise<void>;

beforeAll(async () => {
  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(NodeAgentService, {
        readFile: edge(async (req) => {
          throw THROWN[req.vmId];
        }),
        // A server stream ends with the error after some output: details travel in its trailer.
        async *exec(req) {
          yield { event: { case: 'stdout', value: new TextEncoder().encode('partial') } };
          throw toConnectError(THROWN[req.vmId]);
        },
      }),
  });
  const server = createServer(handler);
  const sessions = new Set<Http2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  client = createNodeAgentClient(url);
  stop = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      for (const s of sessions) s.destroy();
    });
});
afterAll(() => stop());

const unary = async (vmId: string): Promise<NodeAgentFailure> => {
  const err = await client.readFile({ vmId, path: 'x' }).catch((e: unknown) => e);
  return classifyNodeAgentError(err);
};

describe('node-agent errors over the wire', () => {
  it('carries a file error as a typed FileErrorDetail (kind and path), whatever its code', async () => {
    const cases: Array<[string, FileErrorKind, string]> = [
      ['file-missing', FileErrorKind.NOT_FOUND, '/home/sandbox/missing'],
      ['file-dir', FileErrorKind.IS_DIRECTORY, '/tmp'],
      ['file-big', FileErrorKind.TOO_LARGE, '/tmp/big'],
      ['file-link', FileErrorKind.OUTSIDE_SANDBOX, '/home/sandbox/s'],
      ['file-denied', FileErrorKind.PERMISSION_DENIED, '/root/x'],
      ['file-failed', FileErrorKind.FAILED, '/tmp/y'],
    ];
    for (const [vmId, kind, path] of cases) {
      const f = await unary(vmId);
      expect(f.kind, vmId).toBe('file');
      if (f.kind !== 'file') continue;
      expect({ kind: f.detail.kind, path: f.detail.path }, vmId).toEqual({ kind, path });
      expect(f.message).toBe(THROWN[vmId]?.message);
    }
  });

  it('tells a missing process and an exited VM from a missing VM, with their details', async () => {
    const proc = await unary('process');
    expect(proc.kind).toBe('process-not-found');
    if (proc.kind === 'process-not-found') {
      expect(proc.detail.reason).toBe(ProcessNotFoundReason.FORGOTTEN);
      expect(proc.detail.knownProcessIds).toEqual(['p10', 'p11']);
    }
    const port = await unary('port');
    expect(port.kind === 'port-not-listening' && port.detail.port).toBe(8000);
    const exited = await unary('exited');
    expect(exited.kind === 'vm-exited' && exited.detail.vmId).toBe('vm-1');
    expect((await unary('no-vm')).kind).toBe('vm-not-found');
  });

  it('classifies the plain codes: capacity, bad requests, an unreachable guest, a failed boot', async () => {
    expect((await unary('full')).kind).toBe('resource-exhausted');
    expect((await unary('invalid')).kind).toBe('invalid-argument');
    expect((await unary('guest')).kind).toBe('transient');
    expect((await unary('boot')).kind).toBe('other');
    // A suspended VM: FailedPrecondition with its detail (the operator resumes on activity).
    const suspended = await client.readFile({ vmId: 'suspended', path: 'x' }).catch((e: unknown) => e);
    expect(suspended).toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage: 'VM vm-3 is suspended; resume it (ResumeVM) first',
    });
    expect((suspended as ConnectError).findDetails(VMSuspendedDetailSchema)[0]?.vmId).toBe('vm-3');
    expect(classifyNodeAgentError(suspended).kind).toBe('vm-suspended');
  });

  it('keeps the detail when a stream ends with the error', async () => {
    const out: string[] = [];
    const err = await (async () => {
      for await (const m of client.exec({ vmId: 'file-missing', code: '' })) {
        if (m.event.case === 'stdout') out.push(new TextDecoder().decode(m.event.value));
      }
    })().catch((e: unknown) => e);
    expect(out).toEqual(['partial']);
    const f = classifyNodeAgentError(err);
    expect(f.kind === 'file' && f.detail.kind).toBe(FileErrorKind.NOT_FOUND);
  });

  it('calls an agent that cannot be reached transient', async () => {
    const gone = createNodeAgentClient('http://127.0.0.1:1');
    const err = await gone.getVM({ vmId: 'a' }, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(classifyNodeAgentError(err).kind).toBe('transient');
  });
});
