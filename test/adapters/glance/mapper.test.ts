import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { glanceBaseUrl, importRequestBody } from '../../../adapters/glance/client.js';
import { kindOfStatus } from '../../../core/wire/errors.js';
import { explain, httpError } from '../../../core/wire/http.js';
import {
  checksumsOf,
  glanceBaseKeys,
  parseArchitecture,
  pointer,
  toCloudImage,
  toCreateBody,
  toPatch,
  type PatchOperation,
} from '../../../adapters/glance/mapper.js';
import {
  glanceImageSchema,
  glanceImagesPageSchema,
  glanceImportInfoSchema,
  parsePayload,
  type GlanceImage,
} from '../../../adapters/glance/schema.js';
import { isVisorError } from '../../../core/errors.js';
import type { Markers } from '../../../core/iaas/port.js';
import type { Image } from '../../../core/image/model.js';
import { makeImage } from '../../support/images.js';

/** Pure translation Glance <-> generic, checked against Glance's recorded api-ref samples. */

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/glance/${name}`, import.meta.url), 'utf8');
const json = (name: string) => JSON.parse(fixture(name)) as unknown;
const image = (name: string) => parsePayload(glanceImageSchema, json(name), name);

const markers: Markers = {
  agent: 'agent-1',
  imageId: '0b8e1f0e-3c49-4c3a-9f0a-6f1d8a2b9c11',
  sha256: 'a'.repeat(64),
  revision: 3,
};

/** What Glance answers to a create body: the body plus its own base fields. */
function asGlanceWouldStore(body: Record<string, unknown>, extra: Record<string, unknown> = {}): GlanceImage {
  return parsePayload(
    glanceImageSchema,
    {
      id: '11111111-2222-4333-8444-555555555555',
      status: 'active',
      protected: false,
      os_hidden: false,
      owner: 'p1',
      size: 1048577,
      virtual_size: 2097152,
      checksum: 'b'.repeat(32),
      os_hash_algo: 'sha512',
      os_hash_value: 'c'.repeat(128),
      created_at: '2026-01-01T00:00:00Z',
      updated_at: '2026-01-01T00:00:01Z',
      self: '/v2/images/11111111-2222-4333-8444-555555555555',
      file: '/v2/images/11111111-2222-4333-8444-555555555555/file',
      schema: '/v2/schemas/image',
      ...body,
      ...extra,
    },
    'test',
  );
}

describe('Glance image -> CloudImage (recorded samples)', () => {
  it('maps image-show-response field by field', () => {
    const cloud = toCloudImage(image('image-show-response.json'));
    expect(cloud).toEqual({
      nativeId: '1bea47ed-f6a9-463b-b423-14b9cca9ad27',
      name: 'cirros-0.3.2-x86_64-disk',
      state: 'active',
      hidden: false,
      inUse: false,
      access: 'public',
      diskFormat: 'qcow2',
      containerFormat: 'bare',
      size: 13167616,
      checksums: {
        md5: '64d7c1cd2b6f60c92c14662941cb7913',
        sha512:
          '073b4523583784fbe01daff81eba092a262ec37ba6d04dd3f52e4cd5c93eb8258' +
          'af44881345ecda0e49f3d8cc6d2df6b050ff3e72681d723234aff9d17d0cf09',
      },
      metadata: { name: 'cirros-0.3.2-x86_64-disk', type: 'machine', minDisk: 0, minRam: 0, tags: [], properties: {} },
      createdAt: '2014-05-05T17:15:10Z',
      updatedAt: '2014-05-05T17:15:11Z',
    });
    expect(cloud.markers).toBeUndefined();
  });

  it('reads every image of images-list-response, which has no next link (one page)', () => {
    const page = parsePayload(glanceImagesPageSchema, json('images-list-response.json'), 'list');
    expect(page.next).toBeUndefined();
    expect(page.images.map((i) => toCloudImage(i).name)).toEqual(['cirros-0.3.2-x86_64-disk', 'F17-x86_64-cfntools']);
    expect(page.images.map((i) => toCloudImage(i).size)).toEqual([13167616, 476704768]);
  });

  it('maps a fresh record (image-create-response): queued is pending, no size, no checksums', () => {
    const cloud = toCloudImage(image('image-create-response.json'));
    expect(cloud.state).toBe('pending');
    expect(cloud.access).toBe('private');
    expect(cloud.size).toBeUndefined();
    expect(cloud.checksums).toEqual({});
    expect(cloud.metadata.properties).toEqual({}); // `locations` is a base field, not a property
  });

  it('maps a deactivated image (image-details-deactivate-response) to disabled', () => {
    expect(toCloudImage(image('image-details-deactivate-response.json')).state).toBe('disabled');
  });

  it('maps image-update-response: tags, min disk/ram, formats', () => {
    const cloud = toCloudImage(image('image-update-response.json'));
    expect(cloud.metadata).toMatchObject({ name: 'Fedora 17', minDisk: 20, minRam: 512, tags: ['beefy', 'fedora'] });
    expect(cloud).toMatchObject({ diskFormat: 'vhd', containerFormat: 'ovf', access: 'private', size: 21909 });
  });

  it('maps every Glance status to a cloud state', () => {
    const states = {
      queued: 'pending',
      saving: 'pending',
      uploading: 'pending',
      importing: 'pending',
      active: 'active',
      deactivated: 'disabled',
      killed: 'error',
      deleted: 'deleted',
      pending_delete: 'deleted',
    };
    for (const [status, state] of Object.entries(states)) {
      expect(
        toCloudImage(parsePayload(glanceImageSchema, { ...(json('image-show-response.json') as object), status }, 's'))
          .state,
        status,
      ).toBe(state);
    }
  });

  it('maps visibility to access (community is readable by all: public) and os_hidden to hidden', () => {
    const base = json('image-show-response.json') as object;
    const of = (extra: object) => toCloudImage(parsePayload(glanceImageSchema, { ...base, ...extra }, 'v'));
    expect(of({ visibility: 'private' }).access).toBe('private');
    expect(of({ visibility: 'shared' }).access).toBe('shared');
    expect(of({ visibility: 'community' }).access).toBe('public');
    expect(of({ os_hidden: true }).hidden).toBe(true);
  });

  it('reads the multihash under its algorithm and ignores malformed checksums', () => {
    const base = json('image-show-response.json') as object;
    const of = (extra: object) => checksumsOf(parsePayload(glanceImageSchema, { ...base, ...extra }, 'c'));
    expect(of({ os_hash_algo: 'sha256', os_hash_value: 'D'.repeat(64) })).toEqual({
      md5: '64d7c1cd2b6f60c92c14662941cb7913',
      sha256: 'd'.repeat(64),
    });
    expect(of({ os_hash_algo: 'sha512', os_hash_value: 'abc', checksum: 'nothex' })).toEqual({});
    expect(of({ os_hash_algo: null, os_hash_value: null, checksum: null })).toEqual({});
  });

  it('keeps unknown string properties, and drops reserved, marker, mapped and non-string keys', () => {
    const cloud = toCloudImage(
      parsePayload(
        glanceImageSchema,
        {
          ...(json('image-show-response.json') as object),
          hw_disk_bus: 'virtio',
          description: 'a cirros',
          'owner_specified.openstack.md5': 'x',
          os_glance_import_task: 'task-1',
          os_glance_failed_import: '',
          stores: 'fs',
          some_future_base_field: { nested: true },
          architecture: 'amd64',
          os_distro: 'cirros',
          visor_agent: 'agent-1',
          visor_image_id: markers.imageId,
          visor_sha256: markers.sha256,
          visor_revision: '3',
        },
        'p',
      ),
    );
    expect(cloud.metadata.properties).toEqual({
      hw_disk_bus: 'virtio',
      description: 'a cirros',
      'owner_specified.openstack.md5': 'x',
    });
    expect(cloud.metadata.architecture).toBe('x86_64');
    expect(cloud.metadata.os).toEqual({ distro: 'cirros' });
    expect(cloud.markers).toEqual(markers);
  });

  it('reads incomplete markers as "not ours"', () => {
    const cloud = toCloudImage(
      parsePayload(
        glanceImageSchema,
        { ...(json('image-show-response.json') as object), visor_agent: 'agent-1', visor_image_id: markers.imageId },
        'm',
      ),
    );
    expect(cloud.markers).toBeUndefined();
    expect(cloud.metadata.properties).toEqual({});
  });

  it('knows kernels and ramdisks by aki/ari, and otherwise by the visor_type property', () => {
    const base = json('image-show-response.json') as object;
    const of = (extra: object) =>
      toCloudImage(parsePayload(glanceImageSchema, { ...base, ...extra }, 't')).metadata.type;
    expect(of({ disk_format: 'aki', container_format: 'aki' })).toBe('kernel');
    expect(of({ disk_format: 'ari', container_format: 'ari' })).toBe('ramdisk');
    expect(of({ disk_format: 'raw', visor_type: 'kernel' })).toBe('kernel');
    expect(of({ disk_format: 'raw', visor_type: 'nonsense' })).toBe('machine');
  });

  it('parses architecture names and their common aliases', () => {
    expect(['x86_64', 'amd64', 'arm64', 'aarch64', 'i686', 'ppc64le', 'sparc', 42].map(parseArchitecture)).toEqual([
      'x86_64',
      'x86_64',
      'aarch64',
      'aarch64',
      'i386',
      'ppc64le',
      undefined,
      undefined,
    ]);
  });

  it('refuses a malformed image as invalidResponse, naming the field', () => {
    let error: unknown;
    try {
      parsePayload(
        glanceImageSchema,
        { ...(json('image-show-response.json') as object), status: 'frozen', size: -1 },
        'Glance: reading image x',
      );
    } catch (e) {
      error = e;
    }
    expect(isVisorError(error, 'invalidResponse')).toBe(true);
    expect((error as Error).message).toMatch(/^Glance: reading image x: unexpected response \(status: .*size/);
    expect(() => parsePayload(glanceImagesPageSchema, { images: 'none' }, 'list')).toThrow(/images/);
  });

  it('starts imports with the method part of the recorded import requests', () => {
    const glanceDirect = json('image-import-g-d-request.json') as { method: unknown };
    const webDownload = json('image-import-w-d-request.json') as { method: { uri: string } };
    expect(importRequestBody('glance-direct')).toEqual({ method: glanceDirect.method });
    expect(importRequestBody('web-download', webDownload.method.uri)).toEqual({ method: webDownload.method });
  });

  it('strips a version from the catalog URL of Glance', () => {
    expect(['http://g:9292', 'http://g:9292/', 'http://g:9292/v2', 'https://c/image/v2.1/'].map(glanceBaseUrl)).toEqual(
      ['http://g:9292', 'http://g:9292', 'http://g:9292', 'https://c/image'],
    );
  });

  it('reads the import methods of image-info-import-response', () => {
    expect(
      parsePayload(glanceImportInfoSchema, json('image-info-import-response.json'), 'info')['import-methods'].value,
    ).toEqual(['glance-direct', 'web-download']);
  });
});

describe('generic image -> Glance create body and back', () => {
  const full: Image = makeImage({
    name: 'debian-12',
    architecture: 'aarch64',
    diskFormat: 'qcow2',
    containerFormat: 'bare',
    type: 'machine',
    kernelId: '22222222-3333-4444-8555-666666666666',
    ramdiskId: '33333333-4444-4555-8666-777777777777',
    access: 'shared',
    minDisk: 4,
    minRam: 512,
    os: { type: 'linux', distro: 'debian', version: '12' },
    tags: ['golden', 'debian'],
    properties: { hw_disk_bus: 'virtio', description: 'Debian 12 "bookworm"' },
  });

  it('writes the fields of image-create-request (name, formats) and every other generic field', () => {
    const request = json('image-create-request.json') as Record<string, unknown>;
    const body = toCreateBody(makeImage({ name: String(request['name']) }), markers, {
      diskFormat: 'raw',
      containerFormat: 'bare',
    });
    expect(body).toMatchObject({
      name: request['name'],
      disk_format: request['disk_format'],
      container_format: request['container_format'],
    });
    expect(toCreateBody(full, markers, { diskFormat: 'qcow2', containerFormat: 'bare' })).toEqual({
      name: 'debian-12',
      disk_format: 'qcow2',
      container_format: 'bare',
      visibility: 'shared',
      min_disk: 4,
      min_ram: 512,
      tags: ['golden', 'debian'],
      architecture: 'aarch64',
      os_type: 'linux',
      os_distro: 'debian',
      os_version: '12',
      kernel_id: '22222222-3333-4444-8555-666666666666',
      ramdisk_id: '33333333-4444-4555-8666-777777777777',
      hw_disk_bus: 'virtio',
      description: 'Debian 12 "bookworm"',
      visor_agent: 'agent-1',
      visor_image_id: markers.imageId,
      visor_sha256: markers.sha256,
      visor_revision: '3',
    });
    // Every property value Glance gets is a string (its schema: additionalProperties {type: string}).
    for (const [key, value] of Object.entries(
      toCreateBody(full, markers, { diskFormat: 'qcow2', containerFormat: 'bare' }),
    )) {
      if (!glanceBaseKeys.has(key)) expect(typeof value, key).toBe('string');
    }
  });

  it('round-trips every generic field through Glance', () => {
    const body = toCreateBody(full, markers, { diskFormat: 'qcow2', containerFormat: 'bare' });
    const cloud = toCloudImage(asGlanceWouldStore(body));
    expect(cloud.name).toBe(full.name);
    expect(cloud.access).toBe(full.access);
    expect(cloud.diskFormat).toBe(full.diskFormat);
    expect(cloud.containerFormat).toBe(full.containerFormat);
    expect(cloud.markers).toEqual(markers);
    expect(cloud.metadata).toEqual({
      name: full.name,
      architecture: full.architecture,
      type: full.type,
      minDisk: full.minDisk,
      minRam: full.minRam,
      os: full.os,
      tags: full.tags,
      properties: full.properties,
      virtualSize: 2097152,
      kernelId: full.kernelId,
      ramdiskId: full.ramdiskId,
    });
    expect(cloud.size).toBe(1048577);
    expect(cloud.checksums).toEqual({ md5: 'b'.repeat(32), sha512: 'c'.repeat(128) });
  });

  it('round-trips kernel and ramdisk types (aki/ari need no property; raw does)', () => {
    for (const [type, diskFormat, property] of [
      ['kernel', 'aki', undefined],
      ['ramdisk', 'ari', undefined],
      ['kernel', 'raw', 'kernel'],
      ['machine', 'raw', undefined],
    ] as const) {
      const img = makeImage({ type, diskFormat });
      const body = toCreateBody(img, markers, {
        diskFormat,
        containerFormat: diskFormat === 'raw' ? 'bare' : diskFormat,
      });
      expect(body['visor_type']).toBe(property);
      expect(toCloudImage(asGlanceWouldStore(body)).metadata.type).toBe(type);
    }
  });

  it('maps every access level to a visibility', () => {
    for (const access of ['public', 'private', 'shared'] as const) {
      const body = toCreateBody(makeImage({ access }), markers, { diskFormat: 'raw', containerFormat: 'bare' });
      expect(body['visibility']).toBe(access);
      expect(toCloudImage(asGlanceWouldStore(body)).access).toBe(access);
    }
  });

  it('refuses properties that would collide with Glance fields, mapped fields, markers or reserved names', () => {
    for (const key of [
      'visibility',
      'protected',
      'os_hidden',
      'os_distro',
      'visor_agent',
      'os_glance_import_task',
      'owner_specified.openstack.md5',
      'visor_type',
    ]) {
      const img = { ...makeImage(), properties: { [key]: 'x' } };
      let error: unknown;
      try {
        toCreateBody(img, markers, { diskFormat: 'raw', containerFormat: 'bare' });
      } catch (e) {
        error = e;
      }
      expect(isVisorError(error, 'invalidInput'), key).toBe(true);
      expect((error as Error).message).toContain(`property "${key}"`);
    }
  });
});

describe('generic image -> JSON-patch for an update', () => {
  it('produces the operations of image-update-request (plus the properties visor owns)', () => {
    const current = image('image-show-response.json');
    const desired = makeImage({
      name: 'Fedora 17',
      tags: ['fedora', 'beefy'],
      access: 'public',
      minDisk: 0,
      minRam: 0,
    });
    const ops = toPatch(current, desired, markers);
    const recorded = json('image-update-request.json') as PatchOperation[];
    expect(ops.filter((o) => o.op === 'replace')).toEqual(recorded);
    expect(
      ops
        .filter((o) => o.op === 'add')
        .map((o) => o.path)
        .sort(),
    ).toEqual(['/architecture', '/visor_agent', '/visor_image_id', '/visor_revision', '/visor_sha256']);
    expect(ops.filter((o) => o.op === 'remove')).toEqual([]);
  });

  it('is empty when Glance already matches, and removes properties that no longer belong', () => {
    const desired = makeImage({ name: 'same', properties: { keep: 'v', change: 'new' }, access: 'private' });
    const stored = asGlanceWouldStore(toCreateBody(desired, markers, { diskFormat: 'raw', containerFormat: 'bare' }));
    expect(toPatch(stored, desired, markers)).toEqual([]);
    const drifted = asGlanceWouldStore(toCreateBody(desired, markers, { diskFormat: 'raw', containerFormat: 'bare' }), {
      change: 'old',
      stale: 'x',
      'a/b~c': 'y',
      os_glance_failed_import: '',
      'owner_specified.openstack.sha256': 'z',
      min_ram: 64,
    });
    expect(toPatch(drifted, desired, { ...markers, revision: 4 })).toEqual([
      { op: 'replace', path: '/min_ram', value: 0 },
      { op: 'add', path: '/change', value: 'new' },
      { op: 'add', path: '/visor_revision', value: '4' },
      { op: 'remove', path: '/stale' },
      { op: 'remove', path: '/a~1b~0c' },
    ]);
  });

  it('escapes JSON pointers (RFC 6901)', () => {
    expect(pointer('a/b~c')).toBe('/a~1b~0c');
  });
});

describe('Glance and Keystone errors', () => {
  it('explains the recorded HTML 404 page (no Accept: application/json) as text', () => {
    const raw = fixture('error-404-html.http.txt');
    const body = raw.slice(raw.indexOf('\n\n') + 2);
    expect(explain(body)).toBe('找不到任何具有标识 aaa 的映像');
  });

  it('explains the JSON bodies of Glance (webob) and Keystone', () => {
    expect(
      explain({ message: 'No image found with ID x<br /><br />\n\n\n', code: '404 Not Found', title: 'Not Found' }),
    ).toBe('No image found with ID x');
    expect(
      explain(
        '{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}',
      ),
    ).toBe('The request you have made requires authentication.');
    expect(explain(undefined)).toBe('');
  });

  it('maps statuses to kinds', () => {
    expect([400, 401, 403, 404, 409, 410, 413, 415, 416, 429, 500, 503, 302].map(kindOfStatus)).toEqual([
      'invalidInput',
      'auth',
      'forbidden',
      'notFound',
      'conflict',
      'conflict',
      'invalidInput',
      'invalidInput',
      'invalidInput',
      'unavailable',
      'unavailable',
      'unavailable',
      'invalidResponse',
    ]);
  });

  it('maps network failures and never carries the request (token, password) in the cause', async () => {
    const { default: axios } = await import('axios');
    const error = await axios
      .post(
        'http://127.0.0.1:1/v3/auth/tokens',
        { password: 'p4ssw0rd-secret' },
        { headers: { 'X-Auth-Token': 'tok-secret-123' } },
      )
      .catch((e: unknown) => e);
    const mapped = httpError('Keystone: authenticating', error);
    expect(mapped.kind).toBe('unavailable');
    expect(mapped.message).toMatch(/^Keystone: authenticating: ECONNREFUSED/);
    const serialized = JSON.stringify({
      message: mapped.message,
      cause: mapped.cause,
      details: mapped.details,
      props: { ...(mapped.cause as object) },
    });
    expect(serialized).not.toContain('p4ssw0rd-secret');
    expect(serialized).not.toContain('tok-secret-123');
  });
});
