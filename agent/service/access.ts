import type { Image } from '../../core/image/model.js';

/** Who is calling: an authenticated user, or the operator when auth is off (loopback development). */
export interface Caller {
  /**
   * The user's stable id: what images name as their owner and members. Callers inside the
   * process (the agent, `visor sync`) that are not catalog users go by their name.
   */
  id?: string;
  name: string;
  admin: boolean;
}

/** The id images name this caller by. */
export function callerId(caller: Caller): string {
  return caller.id ?? caller.name;
}

/** Public images for everyone; private ones for their owner; shared ones for their members too. */
export function canSee(caller: Caller, image: Image): boolean {
  const id = callerId(caller);
  if (caller.admin || image.access === 'public' || image.owner === id) return true;
  return image.access === 'shared' && image.members.includes(id);
}

export function canModify(caller: Caller, image: Image): boolean {
  return caller.admin || image.owner === callerId(caller);
}
