import type { Action, Plan } from './planner.js';
import { describeShare, type ShareAction } from './share-plan.js';

/** A plan as `visor plan` shows it: with its sharing step when the runner planned one. */
export type ShownPlan = Plan & { sharing?: readonly ShareAction[] };

/** One line per action, in words: what `visor plan`, the API and the dashboard show. */
export function describeAction(action: Action): string {
  switch (action.kind) {
    case 'create':
      return action.desired.convertFrom
        ? `upload (convert ${action.desired.convertFrom} -> ${action.desired.diskFormat})`
        : 'upload';
    case 'replace':
      return `upload new content, then retire ${count(action.retire.length, 'old copy', 'old copies')}`;
    case 'update':
      return action.changes.join('; ');
    case 'adopt':
      return `mark ${action.nativeId} as this target's (${action.reason})`;
    case 'retire':
      return `${action.mode}${action.startsGrace ? ' (grace period starts)' : ''}: ${action.reason}`;
    case 'cleanup':
      return `delete ${action.nativeId}: ${action.reason}`;
    case 'import':
      return `import ${action.mode === 'full' ? 'metadata and bits' : 'metadata'} into the catalog`;
  }
}

const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

export function planJson(plan: ShownPlan) {
  return {
    target: plan.target,
    actions: plan.actions.map((a) => ({
      kind: a.kind,
      name: a.name,
      ...('imageId' in a && a.imageId ? { imageId: a.imageId } : {}),
      ...('nativeId' in a ? { nativeId: a.nativeId } : {}),
      detail: describeAction(a),
    })),
    sharing: (plan.sharing ?? []).map((s) => ({
      kind: s.kind,
      name: s.name,
      imageId: s.imageId,
      nativeId: s.nativeId,
      add: s.add,
      remove: s.remove,
      detail: describeShare(s),
    })),
    notes: plan.notes,
  };
}
