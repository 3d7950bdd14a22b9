import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectorFor } from '../../agent/sync/desired.js';
import { syncPolicySchema } from '../../core/config/sync-policy.js';
import type { Image } from '../../core/image/model.js';
import { rawRequest } from '../support/raw-http.js';
import { runVisor, visorBin } from '../support/cli.js';
import { VisorClient } from '../../agent/client/client.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * New images used to be public, and the default sync selector pushes public images to every
 * cloud: an image added without thinking was everyone's and everywhere. Now new images are
 * private (as in Glance) and reach no cloud until someone makes them public.
 */
describe('new images are private by default', () => {
  let t: SecureServer;
  beforeAll(async () => {
    t = await startSecureServer();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('an image added without an access level is private: hidden from others, not taken by default', async () => {
    const client = new VisorClient({
      url: t.url,
      accessKey: t.users.bob.accessKey,
      secretKey: t.users.bob.secretKey,
      source: 'test',
    });
    const data = randomBytes(1024);
    const added = await client.add(
      { name: 'unthinking', architecture: 'x86_64' },
      { stream: Readable.from([data]), size: data.length },
    );
    expect(added).toMatchObject({ access: 'private', status: 'available' });
    const id = String(added['_id']);
    expect((await rawRequest(t.url, { method: 'GET', path: `/images/${id}/meta`, as: t.users.carol })).status).toBe(
      404,
    );
    const image = await t.server.catalog.images.get(id);
    const defaultSelector = selectorFor(syncPolicySchema.parse({}), 'prod');
    expect(defaultSelector(image)).toBe(false);
    // Made public on purpose: now everyone sees it and the default selector takes it.
    await client.update(id, { access: 'public' });
    expect((await rawRequest(t.url, { method: 'GET', path: `/images/${id}/meta`, as: t.users.carol })).status).toBe(
      200,
    );
    expect(defaultSelector((await t.server.catalog.images.get(id)) as Image)).toBe(true);
  });

  it.skipIf(!existsSync(visorBin))('`visor add --help` says so (needs the build: npm run build)', () => {
    const help = runVisor(['add', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/New images are private \(access=private\)/);
    expect(help.stdout).toMatch(/default sync selector takes public images only/);
  });
});
