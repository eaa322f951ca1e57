import { z } from 'zod';

/** What a VM record keeps of its network, so a restarted agent can re-adopt it. */
export const vmNetworkSchema = z.object({
  slot: z.int().min(0),
  hostIP: z.string(),
  nsIP: z.string(),
  netns: z.string(),
  hostIface: z.string(),
  mode: z.enum(['none', 'all', 'domains']),
  allowDomains: z.array(z.string()).default([]),
});
export type VMNetwork = z.output<typeof vmNetworkSchema>;
