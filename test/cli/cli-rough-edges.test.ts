import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { craftIso } from '../formats/images.js';
import { startTestServer, type TestServer } from '../support/api-server.js';
import { runVisorAsync, stackLine } from '../support/cli.js';

/** Rough edges an operator's read of the CLI and the API found, each checked through the built CLI. */
describe('visor CLI rough edges', () => {
  let t: TestServer;
  let env: Record<string, string>;
  const image = craftIso({ sectors: 64, volumeId: 'ROUGH' });

  beforeAll(async () => {
    t = await startTestServer();
    env = {
      VISOR_URL: t.url,
      VISOR_ACCESS_KEY: t.users.admin.accessKey,
      VISOR_SECRET_KEY: t.users.admin.secretKey,
      HOME: t.dataDir,
    };
    await writeFile(join(t.dataDir, 'disk.iso'), image);
  }, 60_000);
  afterAll(async () => t?.close());

  const visor = (args: string[], extra: Record<string, string> = {}) =>
    runVisorAsync(args, { cwd: t.dataDir, env: { ...env, ...extra } });

  it('delete reports the outcome of every id, in text and JSON, when a later one fails', async () => {
    const ids: string[] = [];
    for (const name of ['one', 'two']) {
      const add = await visor(['add', `name=${name}`, 'architecture=x86_64', '--json']);
      ids.push(String((JSON.parse(add.stdout) as Record<string, unknown>)['_id']));
    }
    const missing = '00000000-0000-4000-8000-000000000000';
    const text = await visor(['delete', ids[0]!, missing, ids[1]!]);
    expect(text.code).toBe(5);
    expect(text.stdout).toContain(`Deleted image ${ids[0]} (one)`);
    expect(text.stdout).toContain(`Deleted image ${ids[1]} (two)`);
    expect(text.stderr).toContain(`${missing}: not deleted: `);
    expect(text.stderr).not.toMatch(stackLine);

    const again = await visor(['add', 'name=three', 'architecture=x86_64', '--json']);
    const three = String((JSON.parse(again.stdout) as Record<string, unknown>)['_id']);
    const json = await visor(['delete', three, missing, '--json']);
    expect(json.code).toBe(5);
    const outcomes = JSON.parse(json.stdout) as { id: string; deleted: boolean; error?: string }[];
    expect(outcomes).toEqual([
      expect.objectContaining({ id: three, deleted: true }),
      { id: missing, deleted: false, error: expect.stringContaining('no image') },
    ]);
  });

  it("accepts VISOR's store= on add (a file store by name or kind, http by location), not on update", async () => {
    const byKind = await visor([
      'add',
      'name=k',
      'architecture=x86_64',
      'format=iso',
      'store=file',
      '--file',
      'disk.iso',
      '--json',
    ]);
    expect(byKind.stderr).toBe('');
    expect(JSON.parse(byKind.stdout)).toMatchObject({ store: 'local', status: 'available' });
    const byName = await visor([
      'add',
      'name=n',
      'architecture=x86_64',
      'format=iso',
      'store=local',
      '--file',
      'disk.iso',
      '--json',
    ]);
    expect(JSON.parse(byName.stdout)).toMatchObject({ store: 'local', status: 'available' });
    const id = String((JSON.parse(byName.stdout) as Record<string, unknown>)['_id']);

    const unknown = await visor(['add', 'name=u', 'architecture=x86_64', 'store=walrus', '--file', 'disk.iso']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/store=walrus: no such store \(configured: local, web\)/);
    const httpUpload = await visor(['add', 'name=h', 'architecture=x86_64', 'store=http', '--file', 'disk.iso']);
    expect(httpUpload.code).toBe(2);
    expect(httpUpload.stderr).toMatch(/location=URL/);
    // Nothing was registered by the refused adds.
    const names = await visor(['brief', '--json']);
    expect((JSON.parse(names.stdout) as { name: string }[]).map((i) => i.name).sort()).toEqual(['k', 'n']);
    expect((await readdir(join(t.dataDir, 'images'), { recursive: true })).filter((f) => f.endsWith('.part'))).toEqual(
      [],
    );

    // store=http with a location: VISOR's reference to bytes served elsewhere.
    const web = createServer((request, response) => {
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': image.length });
      response.end(request.method === 'HEAD' ? undefined : image);
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    try {
      const location = `http://127.0.0.1:${(web.address() as AddressInfo).port}/disk.iso`;
      const ref = await visor([
        'add',
        'name=r',
        'architecture=x86_64',
        'format=iso',
        'store=http',
        `location=${location}`,
        '--json',
      ]);
      expect(ref.stderr).toBe('');
      expect(JSON.parse(ref.stdout)).toMatchObject({ store: 'web', location, status: 'available' });
      const wrong = await visor(['add', 'name=w', 'architecture=x86_64', 'store=local', `location=${location}`]);
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toMatch(/through the http store, not store=local/);
    } finally {
      web.close();
    }
    const update = await visor(['update', id, 'store=web']);
    expect(update.code).toBe(2);
    expect(update.stderr).toMatch(/store is chosen when an image is registered/);
  });

  it("answers 400 for Glance's keys it lacks and typos, aliases the others, filters property.KEY", async () => {
    await visor([
      'add',
      'name=props',
      'architecture=x86_64',
      'archtecture=typo-prop',
      'flavour=small',
      'access=public',
    ]);
    const typo = await visor(['brief', '--query', 'archtecture=x86_64']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/did you mean "architecture"\?/);
    const explicit = await visor(['brief', '--query', 'property.archtecture=typo-prop', '--json']);
    expect((JSON.parse(explicit.stdout) as { name: string }[]).map((i) => i.name)).toEqual(['props']);
    const custom = await visor(['brief', '--query', 'flavour=small', '--json']);
    expect((JSON.parse(custom.stdout) as { name: string }[]).map((i) => i.name)).toEqual(['props']);
    const range = await visor(['brief', '--query', 'size_min=10']);
    expect(range.code).toBe(2);
    expect(range.stderr).toMatch(/"size_min" is a Glance query key: .*size=N/);
    const glance = await visor(['brief', '--query', 'visibility=public&sort_key=name&sort_dir=desc', '--json']);
    expect(glance.code).toBe(0);
    expect((JSON.parse(glance.stdout) as { name: string }[]).map((i) => i.name)).toEqual(['props']);
    const community = await visor(['brief', '--query', 'visibility=community']);
    expect(community.code).toBe(2);
    expect(community.stderr).toMatch(/public, private and shared/);
  });

  it('validates --port whatever else is given', async () => {
    for (const args of [
      ['-a', '127.0.0.1', '-p', 'abc'],
      ['-p', '99999'],
      ['-a', '127.0.0.1', '-p', '0'],
      ['-p', '12ab'],
    ]) {
      const result = await visor(['brief', ...args], { VISOR_URL: '' });
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(/--port must be a TCP port \(1-65535\)/);
    }
    const both = await visor(['brief', '--url', t.url, '-p', '4568']);
    expect(both.code).toBe(2);
    const good = new URL(t.url);
    const ok = await visor(['brief', '-a', good.hostname, '-p', good.port], { VISOR_URL: '' });
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('config validate reads -c and $VISOR_CONFIG like every other command', async () => {
    const file = join(t.dataDir, 'visor.yaml');
    const byFlag = await visor(['config', 'validate', '-c', file, '--json']);
    expect(byFlag.code, byFlag.stderr).toBe(0);
    expect(JSON.parse(byFlag.stdout)).toMatchObject({ valid: true, file });
    const byEnv = await visor(['config', 'validate', '--json'], { VISOR_CONFIG: file });
    expect(JSON.parse(byEnv.stdout)).toMatchObject({ valid: true, file });
    const none = await visor(['config', 'validate']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/name the config file/);
    const clash = await visor(['config', 'validate', file, '-c', join(t.dataDir, 'other.yaml')]);
    expect(clash.code).toBe(2);
  });

  it('offline status shows the next run time, as the agent does, not the cron expression', async () => {
    const config = join(t.dataDir, 'status.yaml');
    await writeFile(
      config,
      [
        `dataDir: ${join(t.dataDir, 'status-data')}`,
        'clouds:',
        '  nightly:',
        '    adapter: opennebula',
        '    options: { endpoint: "http://127.0.0.1:9/RPC2", username: u, password: p, datastore: 1 }',
        '    sync: { schedule: "30 2 * * *" }',
        '  later:',
        '    adapter: opennebula',
        '    options: { endpoint: "http://127.0.0.1:9/RPC2", username: u, password: p, datastore: 1 }',
        '    sync: { enabled: false, schedule: "30 2 * * *" }',
      ].join('\n'),
    );
    const status = await visor(['status', '-c', config]);
    expect(status.code, status.stderr).toBe(0);
    const line = status.stdout.split('\n').find((l) => l.startsWith('nightly'))!;
    expect(line).toMatch(/\d{4}-\d\d-\d\dT\d\d:30:00\.000Z/);
    expect(line).not.toContain('30 2 * * *');
    expect(status.stdout.split('\n').find((l) => l.startsWith('later'))).toMatch(/disabled/);
    const json = JSON.parse((await visor(['status', '-c', config, '--json'])).stdout) as {
      targets: { nextRun?: string }[];
    };
    expect(Date.parse(json.targets[0]!.nextRun!)).toBeGreaterThan(Date.now());
  });
});
