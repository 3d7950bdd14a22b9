import { randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NimbusDriver } from '../../../adapters/nimbus/index.js';
import { isVisorError } from '../../../core/errors.js';
import { bufferContent } from '../../support/content.js';
import { makeImage } from '../../support/images.js';
import { requirePeer } from '../../peers/index.js';
import type { S3Peer } from '../../peers/s3.js';
import { directDriver, setUpCumulusRepository, type CumulusRepository } from './harness.js';

/**
 * What Nimbus's own Cumulus does differently from S3, reproduced by a proxy in front of the real
 * S3 peer (no Cumulus can run here: it is Python 2 and Twisted, unmaintained since 2014).
 * From nimbusproject/nimbus cumulus/cb/pycb (cumulus.py, cbRequest.py):
 *  - cbPutObject reads only Content-MD5 and x-amz-acl: user metadata (x-amz-meta-*) is never
 *    stored, so HEAD never returns any;
 *  - there is no POST handler, so a multipart upload's CreateMultipartUpload fails with
 *    InvalidArgument (HTTP 400).
 * Either way the driver must fail clearly and leave nothing in the repository.
 * The same proxy counts body bytes, to show that metadata updates and moves are server-side copies.
 */

const MiB = 1024 * 1024;
const { peer: started, skip: skipReason } = await requirePeer('s3');

interface Quirks {
  stripMetadata: boolean;
  refusePost: boolean;
  /** Body bytes that went through the proxy, both ways. */
  bytes: { sent: number; received: number };
}

/** A pass-through proxy to the peer with Cumulus's gaps switched on; signatures stay valid (headers untouched). */
async function cumulusLikeProxy(target: string, quirks: Quirks): Promise<{ endpoint: string; server: Server }> {
  const upstream = new URL(target);
  const server = createServer((req, res) => {
    if (quirks.refusePost && req.method === 'POST') {
      req.resume();
      res.writeHead(400, { 'Content-Type': 'application/xml' });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code><Message>Invalid ' +
          'Argument</Message><Resource></Resource><RequestId>1</RequestId></Error>',
      );
      return;
    }
    const forward = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        const headers = { ...answer.headers };
        if (quirks.stripMetadata)
          for (const name of Object.keys(headers)) if (name.startsWith('x-amz-meta-')) delete headers[name];
        res.writeHead(answer.statusCode ?? 502, headers);
        answer.on('data', (chunk: Buffer) => (quirks.bytes.received += chunk.length));
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.on('data', (chunk: Buffer) => (quirks.bytes.sent += chunk.length));
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const test = (title: string, fn: () => Promise<void>) =>
  it(title, async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    await fn();
  }, 60_000);

describe("nimbus against Cumulus's gaps", () => {
  let repo: CumulusRepository;
  let proxy: { endpoint: string; server: Server } | undefined;
  const quirks: Quirks = { stripMetadata: false, refusePost: false, bytes: { sent: 0, received: 0 } };
  let driver: NimbusDriver;

  beforeAll(async () => {
    if (skipReason) return;
    repo = await setUpCumulusRepository(started as S3Peer, 'quirks');
    proxy = await cumulusLikeProxy(repo.peer.endpoint, quirks);
    driver = directDriver(repo, { endpoint: proxy.endpoint });
  });
  afterAll(async () => {
    await driver?.close();
    if (proxy) await new Promise<void>((resolve) => proxy!.server.close(() => resolve()));
    await repo?.cleanup();
  });

  const attempt = async (size: number) => {
    const content = bufferContent(randomBytes(size));
    const image = makeImage({
      name: `quirk-${randomBytes(3).toString('hex')}`,
      access: 'private',
      diskFormat: 'raw',
      containerFormat: 'bare',
    });
    return driver
      .create({
        image,
        markers: { agent: 'quirks', imageId: image.id, sha256: content.checksums.sha256, revision: 1 },
        content,
        timeoutMs: 120_000,
      })
      .then(
        () => {
          throw new Error('create should have failed');
        },
        (error: unknown) => error,
      );
  };

  test('a repository that drops object metadata: create fails as unsupported and removes the object', async () => {
    quirks.stripMetadata = true;
    try {
      const before = await repo.keys();
      const error = await attempt(64 * 1024);
      expect(isVisorError(error, 'unsupported')).toBe(true);
      expect((error as Error).message).toMatch(/did not keep the object metadata visor wrote .* was deleted$/);
      expect(await repo.keys()).toEqual(before);
      // What such a repository lists is never claimed.
      expect((await driver.list()).every((i) => i.markers === undefined)).toBe(true);
    } finally {
      quirks.stripMetadata = false;
    }
  });

  test('a repository without multipart uploads: a large create fails with a hint and leaves nothing', async () => {
    quirks.refusePost = true;
    try {
      const before = await repo.keys();
      const error = await attempt(11 * MiB);
      expect(isVisorError(error, 'invalidInput')).toBe(true);
      expect((error as Error).message).toMatch(/multipart uploads .* raise partSize/);
      expect(await repo.keys()).toEqual(before);
      // Small images still go up as one PutObject.
      const content = bufferContent(randomBytes(64 * 1024));
      const image = makeImage({
        name: `quirk-small-${randomBytes(3).toString('hex')}`,
        access: 'private',
        diskFormat: 'raw',
        containerFormat: 'bare',
      });
      const cloud = await driver.create({
        image,
        markers: { agent: 'quirks', imageId: image.id, sha256: content.checksums.sha256, revision: 1 },
        content,
        timeoutMs: 120_000,
      });
      expect(cloud.markers?.agent).toBe('quirks');
    } finally {
      quirks.refusePost = false;
    }
  });

  test('metadata updates and moves are server-side copies: no image bytes pass through visor', async () => {
    const content = bufferContent(randomBytes(11 * MiB));
    const image = makeImage({
      name: `copy-${randomBytes(3).toString('hex')}`,
      access: 'private',
      diskFormat: 'raw',
      containerFormat: 'bare',
    });
    const markers = { agent: 'quirks', imageId: image.id, sha256: content.checksums.sha256, revision: 1 };
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    quirks.bytes = { sent: 0, received: 0 };
    const updated = await driver.updateMetadata(
      cloud.nativeId,
      { ...image, minRam: 2048, revision: 2 },
      { ...markers, revision: 2 },
    );
    const moved = await driver.updateMetadata(
      updated.nativeId,
      { ...image, access: 'public', revision: 3 },
      { ...markers, revision: 3 },
    );
    expect(moved.markers?.revision).toBe(3);
    // Requests carry no body at all; responses are XML and empty HEAD bodies.
    expect(quirks.bytes.sent).toBe(0);
    expect(quirks.bytes.received).toBeLessThan(16 * 1024);
  });
});
