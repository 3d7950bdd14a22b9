import { z } from 'zod';

/**
 * Per-cloud sync policy: which catalog images go to the cloud and how (selector, naming,
 * visibility, formats, retirement, schedule). The agent fills this in; until then a cloud may
 * only switch syncing on or off, and unknown keys are rejected like everywhere else.
 */
export const syncPolicySchema = z.strictObject({
  enabled: z.boolean().default(true),
});

export type SyncPolicy = z.infer<typeof syncPolicySchema>;
