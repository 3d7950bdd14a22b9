import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { craftIso } from '../formats/images.js';
import { runVisorAsync, stackLine } from '../support/cli.js';
import { visorBin } from '../support/cli.js';

/**
 * The image life cycle through `visor serve` and the CLI: deprecate with a replacement and a
 * schedule, undeprecate, protected images, soft delete, restore with the same bytes, purge, and
 * the server's sweeper applying a deletion date.
 */
describe('visor CLI: deprecate, undeprecate, delete, restore', () => {
  let dir: string;
  let server: ChildProcess;
  let env: Record<string, string>;
  const image = craftIso({ sectors: 512, volumeId: 'LIFECYCLE' });
  const sha256 = createHash('sha256').update(image).digest('hex');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-life-'));
    const data = join(dir, 'data');
    const config = join(dir, 'visor.yaml');
    // softDelete left at its default (7 days): the safety net is on without configuring it.
    await writeFile(config, 'lifecycle:\n  sweepEvery: 1s\n');
    const added = await runVisorAsync(['users', 'add', 'alice', '--admin', '--data-dir', data, '-c', config, '--json']);
    expect(added.code).toBe(0);
    const creds = JSON.parse(added.stdout) as { accessKey: string; secretKey: string };
    const args = [visorBin, 'serve', '-c', config, '--data-dir', data, '--port', '0'];
    server = spawn(process.execPath, args, {
      env: { PATH: process.env['PATH'], HOME: dir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let url = '';
    for await (const line of createInterface({ input: server.stderr! })) {
      const match = /"url":"(http:[^"]+)"/.exec(line);
      if (match) {
        url = match[1]!;
        break;
      }
    }
    env = { VISOR_URL: url, VISOR_ACCESS_KEY: creds.accessKey, VISOR_SECRET_KEY: creds.secretKey, HOME: dir };
    await writeFile(join(dir, 'disk.iso'), image);
  }, 60_000);
  afterAll(async () => {
    server?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  const visor = (args: string[]) => runVisorAsync(args, { cwd: dir, env });
  const json = async (args: string[]) => {
    const result = await visor([...args, '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    return JSON.parse(result.stdout) as Record<string, unknown>;
  };
  const add = async (name: string) =>
    String(
      (
        await json(['add', `name=${name}`, 'architecture=x86_64', 'format=iso', 'family=lc-test', '--file', 'disk.iso'])
      )['_id'],
    );

  it('deprecates with a replacement and dates, shows it, refuses nonsense, and undeprecates', async () => {
    const old = await add('lc-old');
    const fresh = await add('lc-new');
    const deprecated = await json([
      'deprecate',
      old,
      '--replacement',
      fresh,
      '--obsolete-on',
      '2099-01-01',
      '--delete-on',
      '2099-02-01',
    ]);
    expect(deprecated).toMatchObject({
      family: 'lc-test',
      deprecation_state: 'deprecated',
      replacement: fresh,
      obsolete_on: '2099-01-01T00:00:00.000Z',
      delete_on: '2099-02-01T00:00:00.000Z',
    });
    const listed = (await json(['detail', '--query', 'deprecation_state=deprecated'])) as unknown as Record<
      string,
      unknown
    >[];
    expect(listed.map((i) => i['_id'])).toEqual([old]);

    const self = await visor(['deprecate', old, '--replacement', old]);
    expect(self.code).toBe(2);
    expect(self.stderr).toMatch(/cannot replace itself/);
    expect(self.stderr).not.toMatch(stackLine);
    const backwards = await visor(['deprecate', old, '--obsolete-on', '2099-03-01', '--delete-on', '2099-02-01']);
    expect(backwards.code).toBe(2);
    expect(backwards.stderr).toMatch(/comes before the obsolete date/);
    const badDate = await visor(['deprecate', old, '--delete-on', 'soon']);
    expect(badDate.code).toBe(2);
    expect(badDate.stderr).toMatch(/delete_on must be a date/);
    // Nothing of that changed the image.
    expect(await json(['head', old])).toMatchObject({ delete_on: '2099-02-01T00:00:00.000Z' });

    const active = await json(['undeprecate', old]);
    expect(active['deprecation_state']).toBeUndefined();
    const again = await visor(['undeprecate', old]);
    expect(again.code).toBe(6);
    expect(again.stderr).toMatch(/is not deprecated/);
    // The deprecation is the lifecycle verbs' to change, not update's.
    const sneaky = await visor(['update', old, 'deprecation_state=obsolete']);
    expect(sneaky.code).toBe(2);
  });

  it('refuses to delete a protected image', async () => {
    const id = await add('lc-protected');
    await json(['update', id, 'protected=true']);
    const refused = await visor(['delete', id]);
    expect(refused.code).toBe(6);
    expect(refused.stderr).toMatch(/is protected/);
    expect(await json(['head', id])).toMatchObject({ status: 'available', protected: 'true' });
    await json(['update', id, 'protected=false']);
    // `delete --json` reports each id's outcome, with the image as it is now.
    expect(await json(['delete', id])).toEqual([
      { id, deleted: true, image: expect.objectContaining({ _id: id, status: 'deleted' }) },
    ]);
  });

  it('deletes softly, restores with identical bytes, and purges', async () => {
    const id = await add('lc-restorable');
    const outcomes = (await json(['delete', id])) as unknown as { image: Record<string, unknown> }[];
    const deleted = outcomes.map((o) => o.image);
    expect(outcomes[0]).toMatchObject({ id, deleted: true });
    expect(deleted[0]).toMatchObject({ _id: id, status: 'deleted' });
    const until = Date.parse(String(deleted[0]!['purge_after']));
    expect(until - Date.parse(String(deleted[0]!['deleted_at']))).toBe(7 * 86_400_000);
    // Gone from listings and reads, but listed when asked for by status.
    const brief = (await json(['brief'])) as unknown as Record<string, unknown>[];
    expect(brief.map((i) => i['_id'])).not.toContain(id);
    const trash = (await json(['brief', '--query', 'status=deleted'])) as unknown as Record<string, unknown>[];
    expect(trash.map((i) => i['_id'])).toContain(id);
    expect((await visor(['head', id])).code).toBe(5);

    const restored = (await json(['restore', id])) as unknown as Record<string, unknown>[];
    expect(restored[0]).toMatchObject({ _id: id, status: 'available' });
    expect(restored[0]!['deleted_at']).toBeUndefined();
    const out = join(dir, 'restored.iso');
    expect((await visor(['get', id, '-o', out])).code).toBe(0);
    expect(
      createHash('sha256')
        .update(await readFile(out))
        .digest('hex'),
    ).toBe(sha256);

    await json(['delete', id]);
    const purged = (await json(['delete', '--purge', id])) as unknown as Record<string, unknown>[];
    expect(purged[0]).toMatchObject({ id, deleted: true, image: { _id: id } });
    const gone = await visor(['restore', id]);
    expect(gone.code).toBe(5);
    const notDeleted = await visor(['restore', await add('lc-live')]);
    expect(notDeleted.code).toBe(6);
  });

  it('applies a deletion date that has passed (the server sweeps)', async () => {
    const id = await add('lc-scheduled');
    await json(['deprecate', id, '--delete-on', '2001-01-01']);
    let status: unknown;
    for (let i = 0; i < 50 && status !== 'deleted'; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const trash = (await json(['detail', '--query', 'status=deleted'])) as unknown as Record<string, unknown>[];
      status = trash.find((t) => t['_id'] === id)?.['status'];
    }
    expect(status).toBe('deleted');
    expect(await json(['restore', id])).toBeDefined();
  });
});
