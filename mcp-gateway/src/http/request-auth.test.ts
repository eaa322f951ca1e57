import { describe, expect, it } from 'vitest';
import { makeCaller } from '../auth/caller.ts';
import { bearerAuth } from './request-auth.ts';

describe('bearer authentication', () => {
  const auth = bearerAuth({
    authenticate: async (token, ns) =>
      token === 'good' ? makeCaller('apikey:x', ns ?? 'team-a') : undefined,
  });
  it('needs a bearer token and a valid namespace header', async () => {
    await expect(auth({})).rejects.toMatchObject({
      status: 401,
      message: expect.stringMatching(/missing bearer token/),
    });
    await expect(auth({ authorization: 'Basic abc' })).rejects.toMatchObject({ status: 401 });
    await expect(auth({ authorization: 'Bearer bad' })).rejects.toMatchObject({
      status: 401,
      message: expect.stringMatching(/not accepted/),
    });
    await expect(
      auth({ authorization: 'Bearer good', 'x-waggle-namespace': 'Not_OK' }),
    ).rejects.toMatchObject({
      status: 403,
    });
    expect(await auth({ authorization: 'bearer good' })).toMatchObject({
      principal: 'apikey:x',
      namespace: 'team-a',
    });
    expect((await auth({ authorization: 'Bearer good' })).id).toMatch(/^[0-9a-f]{16}$/);
  });
});
