import { describe, expect, it } from 'vitest';
import type { ActionRecord } from '../../core/catalog/port.js';
import type { Action } from './planner.js';
import { TransferTracker } from './transfers.js';

describe('TransferTracker', () => {
  const create = { kind: 'create', imageId: 'i1', name: 'alpha' } as Action;
  const retire = { kind: 'retire', nativeId: 'n9', name: 'old' } as Action;
  const record = { action: 'create', result: 'created' } as ActionRecord;

  it('follows the actions of a run: started, bytes sent, gone when they end', () => {
    const tracker = new TransferTracker();
    const on = tracker.listener('lab');
    on({ type: 'start', action: create });
    on({ type: 'start', action: retire });
    on({ type: 'progress', action: create, bytes: 512, total: 2048 });
    expect(tracker.snapshot('lab')).toEqual([
      expect.objectContaining({ action: 'create', name: 'alpha', imageId: 'i1', bytes: 512, total: 2048 }),
      expect.objectContaining({ action: 'retire', name: 'old', nativeId: 'n9' }),
    ]);
    on({ type: 'end', action: create, record });
    expect(tracker.snapshot('lab').map((t) => t.name)).toEqual(['old']);
    expect(tracker.snapshot('other')).toEqual([]);
    tracker.finished('lab');
    expect(tracker.snapshot('lab')).toEqual([]);
  });

  it('shows the step under way: converting (with its formats), then uploading', () => {
    const tracker = new TransferTracker();
    const on = tracker.listener('lab');
    on({ type: 'start', action: create });
    on({ type: 'phase', action: create, phase: 'converting', detail: 'qcow2 -> raw' });
    expect(tracker.snapshot('lab')[0]).toMatchObject({ phase: 'converting', phaseDetail: 'qcow2 -> raw' });
    on({ type: 'phase', action: create, phase: 'uploading' });
    const [uploading] = tracker.snapshot('lab');
    expect(uploading).toMatchObject({ phase: 'uploading' });
    expect(uploading!.phaseDetail).toBeUndefined();
    on({ type: 'phase', action: retire, phase: 'uploading' });
    expect(tracker.snapshot('lab')).toHaveLength(1);
  });

  it('hands out copies: a reader cannot change what the tracker holds', () => {
    const tracker = new TransferTracker();
    tracker.listener('lab')({ type: 'start', action: create });
    tracker.snapshot('lab')[0]!.bytes = 99;
    expect(tracker.snapshot('lab')[0]!.bytes).toBeUndefined();
  });
});
