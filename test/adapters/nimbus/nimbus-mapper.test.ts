import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { nimbusOptionsSchema } from '../../../adapters/nimbus/index.js';
import {
  asciiJson,
  decodeText,
  encodeText,
  fromObjectMetadata,
  locate,
  maxMetadataBytes,
  maxValueLength,
  metadataBytes,
  objectKey,
  objectNameProblem,
  toCloudImage,
  toObjectMetadata,
  type ContentInfo,
  type RepoLayout,
} from '../../../adapters/nimbus/mapper.js';
import { isVisorError } from '../../../core/errors.js';
import type { Markers } from '../../../core/iaas/port.js';
import { repoRoot } from '../../support/cli.js';
import { makeImage } from '../../support/images.js';

/**
 * The pure Nimbus mapper: the repository layout as Nimbus's own configuration describes it
 * (test/fixtures/nimbus, copied verbatim from nimbusproject/nimbus), and the object-metadata
 * encoding that must round-trip any generic value through ASCII headers.
 */

const fixture = (name: string) => readFileSync(join(repoRoot, 'test/fixtures/nimbus', name), 'utf8');
const properties = (text: string) =>
  Object.fromEntries(
    text
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#') && line.includes('='))
      .map((line) => [line.slice(0, line.indexOf('=')).trim(), line.slice(line.indexOf('=') + 1).trim()]),
  );

const canonicalId = '5c01dfac-fe2c-11df-875b-00264a0eb5ca';
const layout: RepoLayout = { prefix: 'VMS/', canonicalId, commonFolder: 'common' };
const content: ContentInfo = { compression: 'none', size: 1024, md5: 'a'.repeat(32), sha256: 'b'.repeat(64) };
const markers = (agent = 'agent-1'): Markers => ({
  agent,
  imageId: '0f8fad5b-d9cb-469f-a165-70867728950e',
  sha256: 'c'.repeat(64),
  revision: 3,
});

describe('nimbus repository layout', () => {
  it('defaults to what the Nimbus service and cloud-client are configured with', () => {
    const service = properties(fixture('workspace-service-cumulus.conf'));
    const client = properties(fixture('cloud-client-cloud.properties'));
    expect(service['cumulus.repo.bucket']).toBe('Repo');
    expect(client['vws.repository.s3bucket']).toBe('Repo');
    expect(client['vws.repository.type']).toBe('cumulus');
    const options = nimbusOptionsSchema.parse({
      endpoint: `http://${client['vws.repository']}`,
      accessKeyId: client['vws.repository.s3id'],
      secretAccessKey: 'x',
      canonicalId,
    });
    expect(options.bucket).toBe(service['cumulus.repo.bucket']);
    // Nimbus writes the prefix without its slash (VMS); keys are VMS/<folder>/<name>.
    expect(options.prefix).toBe(`${service['cumulus.repo.prefix']}/`);
    expect(options.prefix).toBe(`${client['vws.repository.s3basekey']}/`);
    expect(options.endpoint).toBe('http://localhost:8888');
    // The Cumulus port of the template the fixtures' cloud-client points at.
    expect(properties(fixture('cumulus.ini.in'))['port']).toBe('8888');
  });

  it("reads the walkthrough's image key as the user's own image, and common keys as public", () => {
    // Nimbus's admin walkthrough: cumulus://Repo/VMS/5c01dfac-fe2c-11df-875b-00264a0eb5ca/myfakevm
    expect(locate(layout, `VMS/${canonicalId}/myfakevm`)).toEqual({
      key: `VMS/${canonicalId}/myfakevm`,
      folder: 'own',
      name: 'myfakevm',
    });
    expect(locate(layout, 'VMS/common/hello-cloud')).toEqual({
      key: 'VMS/common/hello-cloud',
      folder: 'common',
      name: 'hello-cloud',
    });
    expect(objectKey(layout, 'own', 'myfakevm')).toBe(`VMS/${canonicalId}/myfakevm`);
    expect(objectKey(layout, 'common', 'hello-cloud')).toBe('VMS/common/hello-cloud');
  });

  it("does not take other users' images, nested keys, the folders themselves or neighbouring prefixes", () => {
    for (const key of [
      'VMS/21161ebe-862a-11df-a9ca-001de0a80259/theirs',
      `VMS/${canonicalId}/a/b`,
      `VMS/${canonicalId}/`,
      'VMS/common/',
      `VMS.description/${canonicalId}/x`,
      `VMS/${canonicalId}`,
      'other/common/x',
      `vms/${canonicalId}/x`,
    ]) {
      expect(locate(layout, key), key).toBeUndefined();
    }
  });

  it('accepts plain image names only', () => {
    for (const name of ['hello-cloud', 'debian-12.raw', 'a', 'Ubuntu_24.04-amd64', 'x'.repeat(255)])
      expect(objectNameProblem(name), name).toBeUndefined();
    for (const name of [
      '',
      '..',
      '../x',
      'a/b',
      'x..y',
      '.hidden',
      '-x',
      'a b',
      'a\u0000',
      'é',
      'x'.repeat(256),
      'a?b',
      'a%2fb',
      'a+b',
    ])
      expect(objectNameProblem(name), name).toBeDefined();
  });
});

describe('nimbus object metadata', () => {
  it('encodes any text as an ASCII header value and back', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (value) => {
        const encoded = encodeText(value);
        expect(encoded).toMatch(/^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/);
        expect(decodeText(encoded)).toBe(value);
      }),
      { numRuns: 500 },
    );
    expect(encodeText('plain-value')).toBe('plain-value');
    expect(encodeText(' padded')).toMatch(/^=\?UTF-8\?B\?/);
    expect(decodeText('=?UTF-8?B?/w==?=')).toBeUndefined();
  });

  it('writes JSON values as ASCII without spaces, so that header trimming cannot damage a chunk', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' })), (value) => {
        const text = asciiJson(value);
        expect(text).toMatch(/^[\x21-\x7e]*$/);
        expect(JSON.parse(text)).toEqual(value);
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips every generic field and the markers through the metadata', () => {
    const propertyKey = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_:-]{0,20}$/);
    fc.assert(
      fc.property(
        fc.dictionary(propertyKey, fc.string({ unit: 'binary', maxLength: 40 }), { maxKeys: 8 }),
        fc.uniqueArray(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }), { maxLength: 5 }),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }),
        (props, tags, distro, agent) => {
          const image = {
            ...makeImage({
              name: 'round-trip',
              minDisk: 2,
              minRam: 512,
              virtualSize: 10_000,
              architecture: 'ppc64le',
              type: 'kernel',
              diskFormat: 'raw',
              containerFormat: 'bare',
              os: { type: 'linux', version: '9' },
            }),
            properties: props,
            tags,
            os: { type: 'linux', distro, version: '9' },
          };
          let meta: Record<string, string>;
          try {
            meta = toObjectMetadata(image, markers(agent), content);
          } catch (error) {
            // Only ever for too much metadata, and then as invalidInput.
            expect(isVisorError(error, 'invalidInput')).toBe(true);
            return;
          }
          expect(metadataBytes(meta)).toBeLessThanOrEqual(maxMetadataBytes);
          for (const value of Object.values(meta)) expect(value.length).toBeLessThanOrEqual(maxValueLength);
          const decoded = fromObjectMetadata(meta);
          expect(decoded.problems).toEqual([]);
          expect(decoded.markers).toEqual(markers(agent));
          expect(decoded.metadata).toEqual({
            name: 'round-trip',
            architecture: 'ppc64le',
            type: 'kernel',
            minDisk: 2,
            minRam: 512,
            virtualSize: 10_000,
            os: image.os,
            tags,
            properties: props,
          });
          expect(decoded.content).toEqual(content);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('leaves images with incomplete, damaged or foreign visor metadata unclaimed, saying why', () => {
    const meta = toObjectMetadata(
      { ...makeImage({ name: 'x' }), properties: { long: 'v'.repeat(600) } },
      markers(),
      content,
    );
    expect(Object.keys(meta).filter((k) => k.startsWith('visor-properties-'))).toEqual([
      'visor-properties-1',
      'visor-properties-2',
      'visor-properties-3',
    ]);
    const damaged: Array<[string, Record<string, string>]> = [
      ['a missing chunk', Object.fromEntries(Object.entries(meta).filter(([k]) => k !== 'visor-properties-2'))],
      ['a chunk that is not JSON', { ...meta, 'visor-properties-3': 'oops' }],
      ['a missing marker', Object.fromEntries(Object.entries(meta).filter(([k]) => k !== 'visor-revision'))],
      ['a malformed marker', { ...meta, 'visor-image-id': 'not-a-uuid' }],
      ['an unknown architecture', { ...meta, 'visor-architecture': 'mips' }],
      ['a bad encoded word', { ...meta, 'visor-name': '=?UTF-8?B?/w==?=' }],
      ['a bad content size', { ...meta, 'visor-content-size': '-1' }],
    ];
    for (const [what, bad] of damaged) {
      const decoded = fromObjectMetadata(bad);
      expect(decoded.markers, what).toBeUndefined();
      expect(decoded.problems.length, what).toBeGreaterThan(0);
    }
    expect(fromObjectMetadata({})).toEqual({ metadata: { tags: [], properties: {} }, problems: [] });
  });
});

describe('nimbus toCloudImage', () => {
  const image = makeImage({ name: 'debian-12', diskFormat: 'raw', containerFormat: 'bare' });

  it('maps an unmarked cloud-client upload: active, public in common, the ETag as its md5, no markers', () => {
    const { image: cloud, problems } = toCloudImage(layout, {
      key: 'VMS/common/hello-cloud',
      size: 2048,
      etag: '"0123456789abcdef0123456789abcdef"',
      lastModified: new Date('2010-12-01T10:00:00Z'),
      metadata: {},
    });
    expect(problems).toEqual([]);
    expect(cloud).toEqual({
      nativeId: 'VMS/common/hello-cloud',
      name: 'hello-cloud',
      state: 'active',
      hidden: false,
      inUse: false,
      access: 'public',
      size: 2048,
      checksums: { md5: '0123456789abcdef0123456789abcdef' },
      metadata: { name: 'hello-cloud', tags: [], properties: {} },
      updatedAt: '2010-12-01T10:00:00.000Z',
    });
  });

  it("reports the image's size and checksums for a gzip object, not the compressed bytes'", () => {
    const gz: ContentInfo = {
      compression: 'gzip',
      size: 10 * 1024 * 1024,
      md5: 'd'.repeat(32),
      sha256: 'e'.repeat(64),
    };
    const meta = toObjectMetadata(image, markers(), gz);
    const { image: cloud } = toCloudImage(layout, {
      key: `VMS/${canonicalId}/debian-12`,
      size: 4321,
      etag: '"ffffffffffffffffffffffffffffffff"',
      metadata: meta,
    });
    expect(cloud).toMatchObject({
      access: 'private',
      size: gz.size,
      checksums: { md5: gz.md5, sha256: gz.sha256 },
      markers: markers(),
      diskFormat: 'raw',
      containerFormat: 'bare',
    });
  });

  it('does not claim an object whose bytes no longer match what visor recorded', () => {
    const meta = toObjectMetadata(image, markers(), content);
    const sizeChanged = toCloudImage(layout, {
      key: `VMS/${canonicalId}/debian-12`,
      size: content.size + 1,
      metadata: meta,
    });
    expect(sizeChanged.image.markers).toBeUndefined();
    expect(sizeChanged.problems.join()).toMatch(/records 1024 bytes but the object has 1025/);
    const md5Changed = toCloudImage(layout, {
      key: `VMS/${canonicalId}/debian-12`,
      size: content.size,
      etag: `"${'f'.repeat(32)}"`,
      metadata: meta,
    });
    expect(md5Changed.image.markers).toBeUndefined();
    expect(md5Changed.image.checksums).toEqual({ md5: 'f'.repeat(32) });
    const multipart = toCloudImage(layout, {
      key: `VMS/${canonicalId}/debian-12`,
      size: content.size,
      etag: `"${'f'.repeat(32)}-3"`,
      metadata: meta,
    });
    expect(multipart.image.markers).toEqual(markers());
    expect(multipart.image.checksums).toEqual({ md5: content.md5, sha256: content.sha256 });
  });

  it('keeps the creation-time object name as the key while the generic name can change', () => {
    const meta = toObjectMetadata({ ...image, name: 'debian-12-renamed' }, markers(), content);
    const { image: cloud } = toCloudImage(layout, {
      key: `VMS/${canonicalId}/debian-12`,
      size: content.size,
      metadata: meta,
    });
    expect(cloud.nativeId).toBe(`VMS/${canonicalId}/debian-12`);
    expect(cloud.name).toBe('debian-12-renamed');
  });
});
