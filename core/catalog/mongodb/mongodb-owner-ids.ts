import { randomUUID } from 'node:crypto';
import type { Collection } from 'mongodb';
import type { User } from '../port.js';
import { OWNER_IDS_MIGRATION } from '../users.js';

type UserDoc = Omit<User, 'name' | 'id'> & { _id: string; id?: string };
type ImageOwnerDoc = { _id: string; owner?: string; members?: string[] };
type StateDoc = { _id: string; value: unknown };

/**
 * The MongoDB side of the owner-ids migration (see sqlite-owner-ids.ts for why): once per
 * catalog, every user gets an id and owners and members that name an existing user are turned
 * into its id, without bumping revisions. Agents starting at the same moment may both run it:
 * ids are assigned only where none is set, and the image updates are idempotent.
 */
export async function migrateOwnersToIds(
  users: Collection<UserDoc>,
  images: Collection<ImageOwnerDoc>,
  state: Collection<StateDoc>,
): Promise<void> {
  if (await state.findOne({ _id: OWNER_IDS_MIGRATION })) return;
  for (const user of await users.find({ id: { $exists: false } }).toArray()) {
    await users.updateOne({ _id: user._id, id: { $exists: false } }, { $set: { id: randomUUID() } });
  }
  const all = await users.find({}, { projection: { _id: 1, id: 1 } }).toArray();
  for (const user of all) {
    if (!user.id) continue;
    await images.updateMany({ owner: user._id }, { $set: { owner: user.id } });
    await images.updateMany(
      { members: user._id },
      { $set: { 'members.$[m]': user.id } },
      { arrayFilters: [{ m: user._id }] },
    );
  }
  await state.replaceOne(
    { _id: OWNER_IDS_MIGRATION },
    { value: { at: new Date().toISOString(), users: all.length } },
    { upsert: true },
  );
}
