import { describe, expect, it } from 'vitest';
import type { Catalog } from '../../core/catalog/port.js';
import { syncPolicySchema } from '../../core/config/sync-policy.js';
import type { Claim } from '../../core/iaas/markers.js';
import type { CloudImage, IaasDriver, Markers, RetireMode } from '../../core/iaas/port.js';
import { silentLogger } from '../../core/logging/logger.js';
import { execute, type ExecutorContext } from './executor.js';
import { Limiter } from './limiter.js';
import type { Plan } from './planner.js';

/**
 * The executor's last check: whatever the plan says, an image is changed only when a fresh read
 * shows markers that fit the action's claim — even with a driver (of a plugin) that ignores claims.
 */
const imageId = '3f2b1c4e-0000-4000-8000-000000000001';
const markers = (target: string | undefined): Markers => ({
  agent: 'agent-1',
  ...(target ? { target } : {}),
  imageId,
  sha256: 'a'.repeat(64),
  revision: 1,
});
const cloudImage = (m: Markers | undefined): CloudImage => ({
  nativeId: 'n-1',
  name: 'ubuntu',
  state: 'active',
  hidden: false,
  inUse: false,
  access: 'public',
  checksums: {},
  ...(m ? { markers: m } : {}),
  metadata: {},
});

function claimIgnoringDriver(current: CloudImage): IaasDriver & { retired: string[] } {
  const retired: string[] = [];
  return {
    adapter: 'fake',
    capabilities: {
      diskFormats: ['raw'],
      containerFormats: ['bare'],
      retireModes: ['hide', 'delete'],
      access: ['public', 'private'],
      reportsChecksums: [],
      reportsSize: false,
      importFromUrl: false,
      requiresUrl: false,
      properties: true,
      tags: true,
      download: false,
      detectsInUse: false,
    },
    retired,
    list: async () => [current],
    get: async () => current,
    create: async () => {
      throw new Error('not used');
    },
    updateMetadata: async () => current,
    retire: async (nativeId: string, mode: RetireMode) => {
      retired.push(`${mode}:${nativeId}`);
    },
    discard: async (nativeId: string) => {
      retired.push(`discard:${nativeId}`);
    },
    download: async () => {
      throw new Error('not used');
    },
    close: async () => undefined,
  };
}

function context(driver: IaasDriver): ExecutorContext {
  const state = { delete: async () => undefined, get: async () => undefined, set: async () => undefined };
  return {
    target: 'prod',
    agentId: 'agent-1',
    policy: syncPolicySchema.parse({ retries: { attempts: 1 } }),
    driver,
    catalog: { state } as unknown as Catalog,
    stores: new Map(),
    defaultStore: 'local',
    cacheDir: '/nonexistent',
    limiter: new Limiter(2),
    logger: silentLogger,
  };
}

const planOf = (claim: Claim, kind: 'retire' | 'cleanup'): Plan => ({
  target: 'prod',
  notes: [],
  actions: [
    kind === 'retire'
      ? { kind, nativeId: 'n-1', name: 'ubuntu', imageId, mode: 'hide', reason: 'test', startsGrace: false, claim }
      : { kind, nativeId: 'n-1', name: 'ubuntu', imageId, reason: 'test', claim },
  ],
});

describe('executor: the last check before a change', () => {
  const prod: Claim = { owner: 'target', agent: 'agent-1', target: 'prod', imageId };

  for (const kind of ['retire', 'cleanup'] as const) {
    it(`${kind}: refuses another target's copy (conflict) and never calls the driver`, async () => {
      const driver = claimIgnoringDriver(cloudImage(markers('staging')));
      const records = await execute(planOf(prod, kind), context(driver));
      expect(records).toEqual([
        expect.objectContaining({
          result: 'failed',
          error: { kind: 'conflict', message: expect.stringMatching(/marked for target staging, not prod/) },
        }),
      ]);
      expect(driver.retired).toEqual([]);
    });

    it(`${kind}: acts on its own copy`, async () => {
      const driver = claimIgnoringDriver(cloudImage(markers('prod')));
      const records = await execute(planOf(prod, kind), context(driver));
      expect(records).toEqual([expect.objectContaining({ result: kind === 'retire' ? 'retired' : 'cleaned' })]);
      // A cleanup discards (deletes, whatever the retire policy); a retirement follows the policy.
      expect(driver.retired).toEqual([kind === 'retire' ? 'hide:n-1' : 'discard:n-1']);
    });
  }

  it('refuses a legacy claim once the copy names a target (another target claimed it first)', async () => {
    const driver = claimIgnoringDriver(cloudImage(markers('staging')));
    const records = await execute(planOf({ owner: 'legacy', agent: 'agent-1', imageId }, 'retire'), context(driver));
    expect(records[0]).toMatchObject({ result: 'failed', error: { kind: 'conflict' } });
    expect(driver.retired).toEqual([]);
  });
});
