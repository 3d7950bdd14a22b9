import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisorClient } from '../../agent/client/client.js';
import { requirePeer } from '../peers/index.js';
import { createTestDatabase, databaseUrl, dropTestDatabase } from '../peers/postgresql.js';
import { createTestBucket, deleteTestBucket, listKeys, peerClient } from '../peers/s3.js';
import { runVisorAsync } from '../support/cli.js';
import { rawRequest, type Credentials } from '../support/raw-http.js';
import { startVisorProcess, type VisorProcess } from '../support/visor-process.js';

/**
 * Stateless API replicas: two `visor serve` processes, each with its own data folder, on one
 * PostgreSQL catalog and one S3 bucket (the Swift s3api peer), sharing only the credentials key.
 * What one adds the other lists, serves and deletes; concurrent updates of one image through
 * both end in one consistent revision: every acknowledged change is there, every refused one
 * got 409 and is not.
 */
const pgPeer = await requirePeer('postgresql');
const s3Peer = await requirePeer('s3');
const skip = pgPeer.skip ?? s3Peer.skip;

let database = '';
let bucket = '';
let dir = '';
let replicas: VisorProcess[] = [];
let admin: Credentials;
const env = () => ({ VISOR_PG_PASSWORD: pgPeer.peer!.password, VISOR_S3_SECRET: s3Peer.peer!.secretAccessKey });

beforeAll(async () => {
  if (skip) return;
  const pg = pgPeer.peer!;
  const s3 = s3Peer.peer!;
  database = await createTestDatabase(pg, 'replicas');
  bucket = await createTestBucket(s3, 'replicas');
  dir = await mkdtemp(join(tmpdir(), 'visor-replicas-'));
  const url = databaseUrl(pg, database).replace(`:${pg.password}@`, '@');
  const config = async (name: string) => {
    const file = join(dir, `${name}.yaml`);
    await writeFile(
      file,
      `dataDir: ${join(dir, name)}
logging: { level: warn, format: json }
catalog:
  type: postgresql
  options: { url: "${url}", password: "\${VISOR_PG_PASSWORD}", poolSize: 5 }
stores:
  central:
    type: s3
    options:
      endpoint: ${s3.endpoint}
      region: ${s3.region}
      bucket: ${bucket}
      prefix: images/
      accessKeyId: "${s3.accessKeyId}"
      secretAccessKey: "\${VISOR_S3_SECRET}"
server:
  auth: { keyFile: ${join(dir, 'credentials.key')} }
`,
    );
    return file;
  };
  const configs = [await config('replica-a'), await config('replica-b')];
  const added = await runVisorAsync(['users', 'add', 'admin', '--admin', '--json', '-c', configs[0]!], { env: env() });
  expect(added.code, added.stderr).toBe(0);
  admin = JSON.parse(added.stdout) as Credentials;
  replicas = await Promise.all(configs.map((c) => startVisorProcess('serve', c, env())));
}, 120_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  if (database) await dropTestDatabase(pgPeer.peer!, database);
  if (bucket) await deleteTestBucket(s3Peer.peer!, bucket);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const client = (replica: VisorProcess) =>
  new VisorClient({ url: replica.url, accessKey: admin.accessKey, secretKey: admin.secretKey, source: 'test' });
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const put = (replica: VisorProcess, id: string, image: Record<string, unknown>, revision?: number) =>
  rawRequest(replica.url, {
    method: 'PUT',
    path: `/images/${id}`,
    headers: { 'content-type': 'application/json', ...(revision !== undefined ? { 'if-match': `"${revision}"` } : {}) },
    body: Buffer.from(JSON.stringify({ image })),
    as: admin,
  });

describe('two API replicas on one PostgreSQL catalog and one S3 store', () => {
  it('lists, serves and deletes through one what was added through the other', async (ctx) => {
    if (skip) ctx.skip(skip);
    const [a, b] = replicas as [VisorProcess, VisorProcess];
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const added = await client(a).add(
      { name: 'replicated', architecture: 'x86_64', format: 'raw', access: 'public' },
      { stream: Readable.from([data]), size: data.length },
    );
    const id = String(added['_id']);
    const listed = await client(b).list('brief');
    expect(listed.filter((i) => i['_id'] === id)).toEqual([
      expect.objectContaining({ name: 'replicated', size: data.length, store: 'central' }),
    ]);
    const download = await client(b).download(id);
    expect(sha256(await buffer(download.stream))).toBe(sha256(data));
    const keys = await listKeys(peerClient(s3Peer.peer!), bucket);
    expect(keys.filter((k) => k.includes(id))).toHaveLength(1);
    // Deleted softly (the default keeps the bits 7 days, restorable); purged through the other replica.
    await client(b).delete(id);
    await expect(client(a).meta(id)).rejects.toMatchObject({ kind: 'notFound' });
    expect((await listKeys(peerClient(s3Peer.peer!), bucket)).filter((k) => k.includes(id))).toHaveLength(1);
    await client(a).lifecycle(id, 'purge');
    expect((await listKeys(peerClient(s3Peer.peer!), bucket)).filter((k) => k.includes(id))).toEqual([]);
  });

  it('a dashboard session opened on one replica works on the other, and signing out on either ends it', async (ctx) => {
    if (skip) ctx.skip(skip);
    const [a, b] = replicas as [VisorProcess, VisorProcess];
    const signIn = await fetch(`${a.url}/ui/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ accessKey: admin.accessKey, secretKey: admin.secretKey }),
    });
    expect(signIn.status).toBe(200);
    const { csrf } = (await signIn.json()) as { csrf: string };
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
    // Behind a balancer the next request may land on the other replica.
    expect((await fetch(`${b.url}/images`, { headers: { cookie } })).status).toBe(200);
    const session = (await (await fetch(`${b.url}/ui/session`, { headers: { cookie } })).json()) as { csrf: string };
    expect(session.csrf).toBe(csrf);
    const out = await fetch(`${b.url}/ui/session/end`, {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: '{}',
    });
    expect(out.status).toBe(204);
    expect((await fetch(`${a.url}/images`, { headers: { cookie } })).status).toBe(401);
  });

  it('a request signed once is refused by the other replica too (one replay memory)', async (ctx) => {
    if (skip) ctx.skip(skip);
    const [a, b] = replicas as [VisorProcess, VisorProcess];
    const signedAt = new Date();
    let captured: Record<string, string> = {};
    const first = await rawRequest(a.url, {
      method: 'GET',
      path: '/images',
      as: admin,
      signedAt,
      tamper: (r) => (captured = { ...r.headers }),
    });
    expect(first.status).toBe(200);
    const replayed = await rawRequest(b.url, { method: 'GET', path: '/images', headers: captured });
    expect(replayed.status).toBe(403);
    expect(replayed.json()).toMatchObject({ message: expect.stringMatching(/replayed/) });
  });

  it('with If-Match, of two updates of the same revision through both replicas exactly one wins', async (ctx) => {
    if (skip) ctx.skip(skip);
    const [a, b] = replicas as [VisorProcess, VisorProcess];
    const image = await client(a).add({ name: 'contended', architecture: 'x86_64' });
    const id = String(image['_id']);
    let revision = Number(image['revision']);
    for (let round = 0; round < 10; round++) {
      const [ra, rb] = await Promise.all([
        put(a, id, { name: `a-${round}` }, revision),
        put(b, id, { name: `b-${round}` }, revision),
      ]);
      const statuses = [ra.status, rb.status].sort();
      expect(statuses, `round ${round}`).toEqual([200, 409]);
      const winner = ra.status === 200 ? `a-${round}` : `b-${round}`;
      revision += 1;
      const now = await client(b).meta(id);
      expect(now).toMatchObject({ name: winner, revision });
      expect((ra.status === 409 ? ra : rb).json()).toMatchObject({ code: 409 });
    }
  });

  it('without If-Match, concurrent updates through both replicas lose nothing that was acknowledged', async (ctx) => {
    if (skip) ctx.skip(skip);
    const [a, b] = replicas as [VisorProcess, VisorProcess];
    const image = await client(b).add({ name: 'many-writers', architecture: 'x86_64' });
    const id = String(image['_id']);
    const writes = Array.from({ length: 24 }, (_, i) => put(i % 2 ? a : b, id, { [`p${i}`]: `v${i}` }));
    const results = await Promise.all(writes);
    for (const r of results) expect([200, 409]).toContain(r.status);
    const won = results.flatMap((r, i) => (r.status === 200 ? [i] : []));
    expect(won.length).toBeGreaterThanOrEqual(1);
    const final = await client(a).meta(id);
    // Every acknowledged write is in the image, every refused one is not, one revision per success.
    for (let i = 0; i < results.length; i++)
      expect(final[`p${i}`], `write ${i}`).toBe(won.includes(i) ? `v${i}` : undefined);
    expect(final['revision']).toBe(Number(image['revision']) + won.length);
  });
});
