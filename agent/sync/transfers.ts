import type { SyncEvent } from './executor.js';

/** One action of a running sync, as it goes: what it is, on which image, how many bytes are sent. */
export interface Transfer {
  action: string;
  name: string;
  imageId?: string;
  nativeId?: string;
  startedAt: string;
  /** The step under way, once one is told: `converting` (qemu-img, before the upload), then `uploading`. */
  phase?: 'converting' | 'uploading';
  /** What the step does (for converting: `qcow2 -> raw`). */
  phaseDetail?: string;
  /** Bytes sent so far and the whole, once an upload is under way. */
  bytes?: number;
  total?: number;
}

/**
 * The actions in flight per target, fed by the executor's events: what the dashboard shows
 * while a run goes on. Entries go when their action ends, and all of a target's when its run does.
 */
export class TransferTracker {
  readonly #targets = new Map<string, Map<object, Transfer>>();

  /** The executor's `onEvent` for one run of `target`. */
  listener(target: string): (event: SyncEvent) => void {
    const running = new Map<object, Transfer>();
    this.#targets.set(target, running);
    return (event) => {
      const { action } = event;
      if (event.type === 'end') running.delete(action);
      else if (event.type === 'start') {
        running.set(action, {
          action: action.kind,
          name: action.name,
          ...('imageId' in action && action.imageId ? { imageId: action.imageId } : {}),
          ...('nativeId' in action ? { nativeId: action.nativeId } : {}),
          startedAt: new Date().toISOString(),
        });
      } else if (event.type === 'phase') {
        const transfer = running.get(action);
        if (transfer) {
          transfer.phase = event.phase;
          if (event.detail) transfer.phaseDetail = event.detail;
          else delete transfer.phaseDetail;
        }
      } else {
        const transfer = running.get(action);
        if (transfer) Object.assign(transfer, { bytes: event.bytes, total: event.total });
      }
    };
  }

  /** The run of `target` ended: nothing of it is in flight any more. */
  finished(target: string): void {
    this.#targets.delete(target);
  }

  snapshot(target: string): Transfer[] {
    return [...(this.#targets.get(target)?.values() ?? [])].map((t) => ({ ...t }));
  }
}
