import type { WaggleEnvironment } from '@waggle/crds';
import * as status from '../status.ts';
import type { PhaseContext } from './context.ts';

/** Failed is terminal: written once, with a Warning Event. */
export async function fail(
  ctx: PhaseContext,
  env: WaggleEnvironment,
  reason: string,
  message: string,
  expiresAt: string,
): Promise<void> {
  if (env.status?.phase === 'Failed') return;
  await ctx.setStatus(env, status.failed(env, ctx.now, reason, message, expiresAt));
  await ctx.events.record(env, 'Warning', reason, message);
}
