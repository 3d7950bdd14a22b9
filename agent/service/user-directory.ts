import type { UserRepository } from '../../core/catalog/port.js';
import { VisorError } from '../../core/errors.js';
import type { Image } from '../../core/image/model.js';
import { uuidPattern } from '../../core/image/schema.js';

/**
 * Between the names people use and the ids images keep: an owner or member given as a user's
 * name or id becomes the id; stored ids are shown as names again. An id whose user is gone is
 * shown as it is (its images belong to nobody who can log in).
 */
export class UserDirectory {
  constructor(private readonly users: UserRepository) {}

  /** The id of the user named (or with the id) `value`; undefined when there is none. */
  async idOf(value: string): Promise<string | undefined> {
    if (uuidPattern.test(value)) {
      const byId = await this.users.findById(value);
      if (byId) return byId.id;
    }
    return (await this.users.findByName(value))?.id;
  }

  /** Like idOf, for values a client sets: an unknown user is a mistake worth naming. */
  async require(value: unknown, field: string): Promise<string> {
    if (typeof value !== 'string') throw new VisorError('invalidInput', `${field} must name a user`);
    const id = await this.idOf(value);
    if (!id)
      throw new VisorError('invalidInput', `${field}: no user named ${value.slice(0, 100)}`, { details: { field } });
    return id;
  }

  /** Names for the owner and member ids of `images` (ids without a user are left out). */
  async names(images: readonly Image[]): Promise<Map<string, string>> {
    const ids = new Set<string>();
    for (const image of images) {
      if (image.owner !== undefined) ids.add(image.owner);
      for (const member of image.members) ids.add(member);
    }
    const out = new Map<string, string>();
    for (const id of ids) {
      if (!uuidPattern.test(id)) continue;
      const user = await this.users.findById(id);
      if (user) out.set(id, user.name);
    }
    return out;
  }
}
