import type { Image } from '../../core/image/model.js';

/** Who is calling: an authenticated user, or the operator when auth is off (loopback development). */
export interface Caller {
  name: string;
  admin: boolean;
}

/** Public images for everyone; private ones for their owner; shared ones for their members too. */
export function canSee(caller: Caller, image: Image): boolean {
  return caller.admin || image.access === 'public' || image.owner === caller.name || (image.access === 'shared' && image.members.includes(caller.name));
}

export function canModify(caller: Caller, image: Image): boolean {
  return caller.admin || image.owner === caller.name;
}
