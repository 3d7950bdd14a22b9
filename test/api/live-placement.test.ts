import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { liveByPlacement, livePlacement } from '../../agent/api/routes/replication.js';
import type { SyncEvent } from '../../agent/sync/executor.js';
import { syncTarget } from '../../agent/sync/runner.js';
import { TransferTracker, type Transfer } from '../../agent/sync/transfers.js';
import { requirePeer } from '../peers/index.js';
import { memorySyncWorld, type MemorySyncWorld } from '../support/memory-sync.js';

/** How the matrix and `where` show a copy being made: the step under way wins over the last run's status. */
describe('live placement', () => {
  const started: Transfer = {
    action: 'create',
    name: 'debian-12',
    imageId: 'img-1',
    startedAt: '2026-01-01T00:00:00Z',
  };
  const converting: Transfer = { ...started, phase: 'converting', phaseDetail: 'qcow2 -> raw' };
  const clouds = [
    { name: 'east', adapter: 'memory', enabled: true, transfers: [converting] },
    { name: 'west', adapter: 'memory', enabled: true, transfers: [started] },
    { name: 'north', adapter: 'memory', enabled: true },
  ];

  it('marks the image converting in the cloud that converts it, and only there', () => {
    const live = liveByPlacement(clouds);
    const pending = { target: 'east', status: 'pending', detail: 'create', copies: [] };
    expect(livePlacement(pending, live.get('east\nimg-1'))).toEqual({
      target: 'east',
      status: 'converting',
      detail: 'qcow2 -> raw',
      copies: [],
    });
    // Started but no step told yet, or another cloud: the recorded status stands.
    expect(live.has('west\nimg-1')).toBe(false);
    expect(livePlacement({ ...pending, target: 'west' }, live.get('west\nimg-1'))).toEqual({
      ...pending,
      target: 'west',
    });
    expect(live.has('east\nimg-2')).toBe(false);
  });

  it('then uploading, naming the action when the step has no detail', () => {
    const live = liveByPlacement([
      {
        name: 'east',
        adapter: 'memory',
        enabled: true,
        transfers: [{ ...started, phase: 'uploading' }],
      },
    ]);
    expect(livePlacement({ status: 'unknown' }, live.get('east\nimg-1'))).toEqual({
      status: 'uploading',
      detail: 'create debian-12',
    });
  });
});

describe('live placement during a real sync', () => {
  let world: MemorySyncWorld | undefined;
  afterEach(async () => {
    await world?.close();
    world = undefined;
  });

  it('is converting while qemu-img makes the cloud format, then uploading', async (ctx) => {
    const qemu = await requirePeer('qemu-img');
    if (qemu.skip) return ctx.skip(qemu.skip);
    world = await memorySyncWorld();
    const image = await world.addImage('to-convert', randomBytes(256 * 1024));
    const tracker = new TransferTracker();
    const track = tracker.listener('lab');
    const seen: string[] = [];
    const live: string[] = [];
    const onEvent = (event: SyncEvent) => {
      track(event);
      if (event.type === 'phase') {
        seen.push(`${event.phase}${event.detail ? ` ${event.detail}` : ''}`);
        const summary = { name: 'lab', adapter: 'memory', enabled: true, transfers: tracker.snapshot('lab') };
        live.push(livePlacement({ status: 'pending' }, liveByPlacement([summary]).get(`lab\n${image.id}`)).status);
      } else if (event.type !== 'progress') seen.push(event.type);
    };
    const target = world.target({}, { diskFormats: ['qcow2'] });
    const run = await syncTarget(target, world.deps(), { trigger: 'manual', onEvent });
    expect(run).toMatchObject({
      status: 'succeeded',
      actions: [{ result: 'created', detail: 'converted raw -> qcow2' }],
    });
    expect(seen).toEqual(['start', 'converting raw -> qcow2', 'uploading', 'end']);
    expect(live).toEqual(['converting', 'uploading']);
    // The converted artifact is kept: another cloud wanting the same format converts nothing.
    const phases: string[] = [];
    const other = world.target({}, { diskFormats: ['qcow2'] }, 'lab2');
    const again = await syncTarget(other, world.deps(), {
      trigger: 'manual',
      onEvent: (event) => void (event.type === 'phase' && phases.push(event.phase)),
    });
    expect(again.status).toBe('succeeded');
    expect(phases).toEqual(['uploading']);
  });
});
