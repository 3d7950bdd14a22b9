import { createServer, type Server } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirePeer } from '../peers/index.js';
import { createTestDatabase, databaseUrl, dropTestDatabase } from '../peers/postgresql.js';
import { createTestBucket, deleteTestBucket, listKeys, peerClient } from '../peers/s3.js';
import { runVisorAsync, stackLine } from '../support/cli.js';

const glance = await requirePeer('openstack');
const s3 = await requirePeer('s3');
const postgres = await requirePeer('postgresql');

interface Report {
  verdict: string;
  checks: { check: string; verdict: string; detail: string; fix?: string }[];
}

let dir: string;
let counter = 0;
async function doctor(yaml: string, extra: string[] = [], env: Record<string, string> = {}) {
  const file = join(dir, `doctor-${counter++}.yaml`);
  await writeFile(file, `dataDir: ${join(dir, 'data')}\n${yaml}`);
  const text = await runVisorAsync(['doctor', '-c', file, ...extra], { env });
  const json = await runVisorAsync(['doctor', '-c', file, '--json', ...extra], { env });
  // The AWS SDK warns about Node 20 on stderr; nothing of visor's own goes there.
  expect(json.stderr.replace(/^\(node:\d+\) (NodeVersionSupport)?Warning.*\n?/gm, ''), json.stderr).not.toMatch(
    /visor:/,
  );
  return { text, report: JSON.parse(json.stdout) as Report, code: json.code };
}
const verdictOf = (report: Report, check: string) => report.checks.find((c) => c.check === check)?.verdict;

describe('visor doctor', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-doctor-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('passes a sound local set-up, one line per check, and writes nothing that stays', async () => {
    const { text, report } = await doctor(
      'stores: { local: { type: file, options: { path: images } } }\ndefaultStore: local\n',
    );
    expect(verdictOf(report, 'config')).toBe('ok');
    expect(verdictOf(report, 'catalog')).toBe('ok');
    expect(verdictOf(report, 'store local')).toBe('ok');
    expect(report.checks.find((c) => c.check === 'qemu-img')?.detail).toMatch(/qemu-img version \d/);
    expect(text.stdout).toMatch(/^ok\s+catalog\s+sqlite.*0 images$/m);
    expect(text.stdout).toMatch(/^ok\s+store local\s+file: wrote, read back and deleted/m);
    expect(text.code).toBe(report.verdict === 'ok' ? 0 : 3);
    const { readdir } = await import('node:fs/promises');
    expect(await readdir(join(dir, 'data', 'images'))).toEqual([]);
  });

  it('fails a config that does not load, with what to do and no stack', async () => {
    const { text, report, code } = await doctor('stores: { local: { type: nope } }\n');
    expect(code).toBe(1);
    expect(report.checks).toEqual([expect.objectContaining({ check: 'config', verdict: 'fail' })]);
    expect(text.stdout).toMatch(/^fail\s+config\s+.*\n(.*\n)*\s+-> visor config validate/m);
    expect(text.stderr + text.stdout).not.toMatch(stackLine);
  });

  it('fails a cloud that never answers within the deadline, and still checks the rest', async () => {
    const sockets: import('node:net').Socket[] = [];
    const silent: Server = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as import('node:net').AddressInfo).port;
    try {
      const yaml = [
        'clouds:',
        '  stuck:',
        '    adapter: opennebula',
        `    options: { endpoint: "http://127.0.0.1:${port}/RPC2", username: u, password: p, datastore: 1 }`,
        '',
      ].join('\n');
      const started = Date.now();
      const { report, code } = await doctor(yaml, ['--timeout', '1']);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(code).toBe(1);
      expect(report.checks.find((c) => c.check === 'cloud stuck')).toMatchObject({
        verdict: 'fail',
        detail: 'no answer within 1 s',
      });
      expect(verdictOf(report, 'catalog')).toBe('ok');
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });

  describe.skipIf(!glance.peer)(`against the real Glance${glance.skip ? ` (skipped: ${glance.skip})` : ''}`, () => {
    const cloud = (password: string) => {
      const p = glance.peer!;
      return [
        'clouds:',
        '  glance:',
        '    adapter: glance',
        '    options:',
        `      authUrl: ${p.authUrl}`,
        `      region: ${p.region}`,
        `      auth: { type: password, username: ${p.admin.username}, password: '${password}',`,
        `        projectName: ${p.admin.projectName} }`,
        '',
      ].join('\n');
    };

    it('lists the cloud and reads its clock with the right credentials', async () => {
      const { report } = await doctor(cloud(glance.peer!.admin.password));
      expect(report.checks.find((c) => c.check === 'cloud glance')).toMatchObject({
        verdict: 'ok',
        detail: expect.stringMatching(/images listed/),
      });
      const clock = report.checks.find((c) => c.check === 'cloud glance clock');
      expect(clock, JSON.stringify(clock)).toMatchObject({
        verdict: 'ok',
        detail: expect.stringMatching(/clock skew -?\d+ s/),
      });
    });

    it('fails with refused credentials, saying what to check', async () => {
      const { text, report, code } = await doctor(cloud('not-the-password'));
      expect(code).toBe(1);
      expect(verdictOf(report, 'cloud glance')).toBe('fail');
      expect(text.stdout).toMatch(/^fail\s+cloud glance\s+.*\n\s+-> check clouds\.glance\.options/m);
      expect(text.stdout).not.toContain('not-the-password');
    });
  });

  describe.skipIf(!s3.peer)(`against the real S3 server${s3.skip ? ` (skipped: ${s3.skip})` : ''}`, () => {
    const store = (bucket: string, secret: string) =>
      [
        'stores:',
        '  central:',
        '    type: s3',
        `    options: { endpoint: "${s3.peer!.endpoint}", region: ${s3.peer!.region}, bucket: ${bucket},`,
        `      accessKeyId: "${s3.peer!.accessKeyId}", secretAccessKey: "${secret}" }`,
        'defaultStore: central',
        '',
      ].join('\n');

    it('writes, reads back and deletes a probe in the bucket; fails refused credentials', async () => {
      const bucket = await createTestBucket(s3.peer!, 'doctor');
      try {
        const good = await doctor(store(bucket, s3.peer!.secretAccessKey));
        expect(verdictOf(good.report, 'store central')).toBe('ok');
        expect(await listKeys(peerClient(s3.peer!), bucket)).toEqual([]);
        const bad = await doctor(store(bucket, 'wrong-secret'));
        expect(bad.code).toBe(1);
        expect(verdictOf(bad.report, 'store central')).toBe('fail');
        expect(bad.text.stdout).not.toContain('wrong-secret');
      } finally {
        await deleteTestBucket(s3.peer!, bucket);
      }
    });
  });

  describe.skipIf(!postgres.peer)(
    `against the real PostgreSQL${postgres.skip ? ` (skipped: ${postgres.skip})` : ''}`,
    () => {
      const catalog = (database: string, password: string) =>
        `catalog: { type: postgresql, options: { url: "${databaseUrl(postgres.peer!, database, password)}" } }\n`;

      it('opens the catalog with its schema; fails a refused password', async () => {
        const database = await createTestDatabase(postgres.peer!, 'doctor');
        try {
          const good = await doctor(catalog(database, postgres.peer!.password));
          expect(good.report.checks.find((c) => c.check === 'catalog')).toMatchObject({
            verdict: 'ok',
            detail: expect.stringMatching(/^postgresql .*schema up to date, 0 images/),
          });
          const bad = await doctor(catalog(database, 'wrong-password'));
          expect(bad.code).toBe(1);
          expect(verdictOf(bad.report, 'catalog')).toBe('fail');
        } finally {
          await dropTestDatabase(postgres.peer!, database);
        }
      });
    },
  );
});
