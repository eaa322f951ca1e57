import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { makeCaller } from '../auth/caller.ts';
import { UserError } from '../errors.ts';
import { createMcpServer } from './server-factory.ts';
import { defineTool, type ToolContext } from './tool.ts';

// The log lines of one tool call: a call about an environment carries its envId
// ("<namespace>/<name>"), as the operator's and the node-agent's lines about it do.
describe('tool call logs', () => {
  it('carry the environment’s envId in the call’s child logger', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    let seen: ToolContext['log'] | undefined;
    const tool = defineTool({
      name: 'poke',
      title: 'Poke',
      description: 'fails as a user error',
      input: z.object({ environment_id: z.string().optional() }),
      output: z.object({}),
      annotations: {},
      run: async (_args, ctx) => {
        seen = ctx.log;
        ctx.log.info('poking');
        throw new UserError('environment_not_found', 'no such environment');
      },
    });
    const server = createMcpServer(makeCaller('apikey:test', 'team-a'), [tool], log);
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 't', version: '0' });
    await client.connect(clientSide);

    const r = await client.callTool({ name: 'poke', arguments: { environment_id: 'env-1' } });
    expect(r.isError).toBe(true);
    expect(seen).toBeDefined();
    expect(lines.find((l) => l.msg === 'poking')).toMatchObject({ tool: 'poke', envId: 'team-a/env-1' });
    expect(lines.find((l) => l.msg === 'tool call refused')).toMatchObject({
      envId: 'team-a/env-1',
      code: 'environment_not_found',
    });

    lines.length = 0;
    await client.callTool({ name: 'poke', arguments: {} });
    expect(lines.find((l) => l.msg === 'tool call refused')).not.toHaveProperty('envId');
    await client.close();
  });
});
