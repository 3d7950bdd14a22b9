import { describe, expect, it } from 'vitest';
import { isVisorError } from '../../../core/errors.js';
import type { Markers } from '../../../core/iaas/port.js';
import type { Access, DiskFormat, Image } from '../../../core/image/model.js';
import {
  accessOf,
  allocationAttributes,
  expiredName,
  metadataAttributes,
  octalPermissions,
  originalName,
  permissionsFor,
  propertyAttribute,
  propertyKeyOf,
  stateOf,
  toCloudImage,
  updateAttributes,
  type WriteOptions,
} from '../../../adapters/opennebula/mapper.js';
import { parseImage, parseImagePool, type OneImage } from '../../../adapters/opennebula/schema.js';
import { serializeTemplate } from '../../../adapters/opennebula/mapper-template.js';
import { imageXml } from '../../doubles/opennebula/documents.js';
import { parseTemplate } from '../../doubles/opennebula/template-parser.js';
import { makeImage } from '../../support/images.js';
import { as7x, recordedPayload } from './recorded.js';

const read = { expiredPrefix: 'EXPIRED_' };
const write: WriteOptions = { imageType: 'OS', persistent: false };
const markers: Markers = {
  agent: 'agent-1',
  imageId: '0b8f4a52-4a43-4a49-9a11-6d4a3c2b1a00',
  sha256: 'a'.repeat(64),
  revision: 7,
};
const iso = (epoch: number) => new Date(epoch * 1000).toISOString();

function expectKind(fn: () => unknown, kind: string, pattern?: RegExp): void {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(isVisorError(error) ? error.kind : String(error)).toBe(kind);
  if (pattern) expect((error as Error).message).toMatch(pattern);
}

/**
 * What oned makes of an allocation template (Image::insert): the template text is parsed by
 * oned's grammar, NAME/TYPE/PERSISTENT/FORMAT move out of the template into the object, DEV_PREFIX
 * gets its default. The result goes through the real XML document and the adapter's schema.
 */
function throughOned(
  attributes: Record<string, string>,
  permissions: number[] = [1, 1, 0, 0, 0, 0, 0, 0, 0],
): OneImage {
  const template = parseTemplate(serializeTemplate(attributes, 'test'));
  const take = (k: string) => {
    const v = template.get(k);
    template.delete(k);
    return v;
  };
  const name = take('NAME') ?? '';
  const type = ['OS', 'CDROM', 'DATABLOCK', 'KERNEL', 'RAMDISK'].indexOf(take('TYPE') ?? 'OS');
  const persistent = take('PERSISTENT') === 'YES';
  const format = take('FORMAT') ?? 'raw';
  return parseImage(
    imageXml({
      id: 42,
      uid: 0,
      gid: 0,
      uname: 'oneadmin',
      gname: 'oneadmin',
      name,
      permissions,
      type,
      diskType: 0,
      persistent,
      regtime: 1_700_000_000,
      modtime: 1_700_000_100,
      source: '/var/lib/one/datastores/1/abc',
      path: 'http://agent/x',
      format,
      fs: '',
      sizeMb: 2,
      state: 1,
      prevState: 4,
      datastoreId: 1,
      datastore: 'default',
      vms: [],
      template,
    }),
  );
}

describe('OpenNebula mapper: recorded IMAGE documents (5.x) to generic', () => {
  it('maps a READY image', () => {
    const image = parseImage(recordedPayload('one.image.info.ok-state1-ready', 'IMAGE'));
    expect(toCloudImage(image, read)).toEqual({
      nativeId: '15',
      name: 'cloudkeeper-spec-image',
      state: 'active',
      hidden: false,
      inUse: false,
      access: 'private',
      diskFormat: 'raw',
      checksums: {},
      metadata: { name: 'cloudkeeper-spec-image', type: 'machine', tags: [], properties: {} },
      createdAt: iso(1487807148),
    });
  });

  it(
    'maps a USED image that cloudkeeper-one expired: in use, hidden, ' +
      'its generic name recovered, foreign attributes as properties',
    () => {
      const cloud = toCloudImage(parseImage(recordedPayload('one.image.info.ok-state2-used', 'IMAGE')), read);
      expect(cloud).toMatchObject({
        nativeId: '18',
        name: 'EXPIRED_1488291204_ttylinux03',
        state: 'active',
        inUse: true,
        hidden: true,
        access: 'private',
      });
      expect(cloud.markers).toBeUndefined();
      expect(cloud.metadata).toEqual({
        name: 'ttylinux03',
        type: 'machine',
        tags: [],
        // DEV_PREFIX and the echoed FSTYPE are oned's own attributes, not properties.
        properties: {
          cloudkeeper_appliance_id: 'qwerty123',
          cloudkeeper_expired: 'yes',
          cloudkeeper_id: 'cloudkeeper-spec',
        },
      });
    },
  );

  it.each([
    ['ok-state3-disabled', 'disabled', false],
    ['ok-state4-locked', 'pending', false],
    ['ok-state5-error', 'error', false],
  ] as const)('maps the recorded %s image to %s', (label, state, inUse) => {
    const cloud = toCloudImage(parseImage(recordedPayload(`one.image.info.${label}`, 'IMAGE')), read);
    expect(cloud.state).toBe(state);
    expect(cloud.inUse).toBe(inUse);
  });

  it('maps the recorded pool of six images', () => {
    const pool = parseImagePool(recordedPayload('one.imagepool.info.ok-6-images', 'IMAGE_POOL')).map((i) =>
      toCloudImage(i, read),
    );
    expect(pool.map((i) => [i.nativeId, i.state, i.inUse, i.hidden, i.metadata.name])).toEqual([
      ['3', 'active', true, false, 'ttylinux03'],
      ['5', 'active', false, false, 'ttylinux05'],
      ['6', 'active', false, false, 'ttylinux06'],
      ['7', 'disabled', false, true, 'ttylinux07'],
      ['8', 'active', false, false, 'ttylinux08'],
      ['11', 'active', false, false, 'cloudkeeper-spec-image'],
    ]);
    expect(pool[2]?.metadata.properties).toMatchObject({ spec_attribute: 'test', cloudkeeper_appliance_id: '666' });
  });

  it('reads the same image from its 7.x document, plus MODTIME as updatedAt', () => {
    for (const label of ['ok-state1-ready', 'ok-state2-used', 'ok-state3-disabled']) {
      const v5 = toCloudImage(parseImage(recordedPayload(`one.image.info.${label}`, 'IMAGE')), read);
      const v7 = toCloudImage(parseImage(as7x(recordedPayload(`one.image.info.${label}`, 'IMAGE'))), read);
      expect(v7).toEqual({ ...v5, updatedAt: v5.createdAt });
    }
  });
});

describe('OpenNebula mapper: every generic field both ways', () => {
  const full = (overrides: Partial<Image> = {}): Image =>
    ({
      ...makeImage({
        name: 'debian-12 (generic) v1.2',
        architecture: 'aarch64',
        diskFormat: 'qcow2',
        containerFormat: 'bare',
        access: 'public',
        minDisk: 10,
        minRam: 512,
        virtualSize: 10 * 1024 ** 3,
        os: { type: 'linux', distro: 'debian', version: '12' },
        tags: ['golden', 'debian 12'],
        properties: {
          description: 'Debian "bookworm" & friends\nsecond line',
          hw_disk_bus: 'virtio',
          Purpose: 'Mixed case key',
          'hw:cpu_policy': 'dedicated',
          'os-distro': 'dash key',
          driver: 'a property named like a native attribute',
          visor_note: "a property in visor's prefix",
          quoted: 'say "hi" \\"there\\"',
          empty_looking: ' ',
        },
      }),
      ...overrides,
    }) as Image;

  it(
    'round-trips name, architecture, type, min disk/ram, ' +
      'virtual size, os, tags, properties and markers through oned',
    () => {
      const image = full();
      const attributes = allocationAttributes(image, markers, 'qcow2', write);
      expect(attributes).toMatchObject({
        NAME: image.name,
        TYPE: 'OS',
        PERSISTENT: 'NO',
        DRIVER: 'qcow2',
        FORMAT: 'qcow2',
        ARCH: 'aarch64',
        LABELS: 'golden,debian 12',
        VISOR_REVISION: '7',
      });
      const cloud = toCloudImage(throughOned(attributes, [1, 1, 0, 1, 0, 0, 1, 0, 0]), read);
      expect(cloud.markers).toEqual(markers);
      expect(cloud.diskFormat).toBe('qcow2');
      expect(cloud.access).toBe('public');
      expect(cloud.metadata).toEqual({
        name: image.name,
        architecture: image.architecture,
        type: 'machine',
        minDisk: image.minDisk,
        minRam: image.minRam,
        virtualSize: image.virtualSize,
        os: image.os,
        tags: image.tags,
        properties: image.properties,
      });
      expect(cloud.createdAt).toBe(iso(1_700_000_000));
      expect(cloud.updatedAt).toBe(iso(1_700_000_100));
    },
  );

  it('stores plain snake_case keys as readable attributes and encodes the rest so they come back exactly', () => {
    expect(propertyAttribute('hw_disk_bus')).toBe('HW_DISK_BUS');
    expect(propertyAttribute('description')).toBe('DESCRIPTION');
    for (const key of ['Purpose', 'hw:cpu_policy', 'os-distro', 'driver', 'visor_note', 'arch', 'labels', 'error']) {
      const attribute = propertyAttribute(key);
      expect(attribute).toMatch(/^VISOR_PROPERTY_X_[0-9A-F]+$/);
      expect(propertyKeyOf(attribute)).toBe(key);
    }
    // oned's own attributes and visor's bookkeeping never read as properties.
    for (const attribute of ['DEV_PREFIX', 'DRIVER', 'MD5', 'ERROR', 'ARCH', 'LABELS', 'VISOR_AGENT', 'VISOR_EXPIRED'])
      expect(propertyKeyOf(attribute)).toBeUndefined();
  });

  it.each([
    ['machine', 'raw', 'OS', 'raw'],
    ['machine', 'qcow2', 'OS', 'qcow2'],
    ['machine', 'iso', 'CDROM', 'iso'],
    ['kernel', 'aki', 'KERNEL', 'aki'],
    ['ramdisk', 'ari', 'RAMDISK', 'ari'],
  ] as const)(
    'registers a %s image from %s content as TYPE %s and reads it back as %s',
    (type, format, oneType, back) => {
      const image = full({ type, diskFormat: format as DiskFormat });
      const attributes = allocationAttributes(image, markers, format, write);
      expect(attributes['TYPE']).toBe(oneType);
      if (oneType === 'KERNEL' || oneType === 'RAMDISK') expect(attributes['PERSISTENT']).toBeUndefined();
      const cloud = toCloudImage(throughOned(attributes), read);
      expect(cloud.diskFormat).toBe(back);
      expect(cloud.metadata.type).toBe(type);
    },
  );

  it('uses the configured TYPE, persistence and device prefix for machine disks', () => {
    const attributes = allocationAttributes(full(), markers, 'raw', {
      imageType: 'DATABLOCK',
      persistent: true,
      devPrefix: 'vd',
    });
    expect(attributes).toMatchObject({ TYPE: 'DATABLOCK', PERSISTENT: 'YES', DEV_PREFIX: 'vd', DRIVER: 'raw' });
    expect(toCloudImage(throughOned(attributes), read).metadata.type).toBe('machine');
  });

  it.each(['public', 'shared', 'private'] as Access[])('maps access %s to permissions and back', (access) => {
    const perms = permissionsFor(access);
    const applied = [1, 1, 0, 1, 0, 0, 1, 0, 0].map((p, i) => (perms[i] === -1 ? p : perms[i]!));
    expect(accessOf(throughOned(allocationAttributes(full(), markers, 'raw', write), applied).permissions)).toBe(
      access,
    );
    expect(perms.filter((p, i) => p !== -1 && ![3, 6].includes(i))).toEqual([]);
  });

  it('writes removed fields and properties as blanks in a merge update, which read back as absent', () => {
    const before = throughOned(allocationAttributes(full(), markers, 'qcow2', write));
    const next = full({ os: { type: 'linux' }, tags: [], properties: { hw_disk_bus: 'scsi' } });
    delete (next as Partial<Image>).minRam;
    const update = updateAttributes(before, next, { ...markers, revision: 8 });
    expect(update).toMatchObject({
      HW_DISK_BUS: 'scsi',
      DESCRIPTION: '',
      LABELS: '',
      MIN_RAM: '',
      OS_DISTRO: '',
      VISOR_REVISION: '8',
    });
    expect(update[propertyAttribute('Purpose')]).toBe('');
    // What oned's merge does: every named attribute replaced, the others kept.
    const merged = new Map([...Object.entries(before.template), ...parseTemplate(serializeTemplate(update, 'update'))]);
    const after = toCloudImage(throughOned({ NAME: before.name, ...Object.fromEntries(merged) }), read);
    expect(after.metadata).toEqual({
      name: next.name,
      architecture: next.architecture,
      type: 'machine',
      minDisk: 10,
      virtualSize: next.virtualSize,
      os: { type: 'linux' },
      tags: [],
      properties: { hw_disk_bus: 'scsi' },
    });
    expect(after.markers?.revision).toBe(8);
  });

  it('refuses what oned cannot hold, naming each problem, before anything is sent', () => {
    expectKind(
      () => allocationAttributes(full({ name: 'ubuntu:24.04' }), markers, 'raw', write),
      'invalidInput',
      /character ':'/,
    );
    expectKind(
      () => allocationAttributes(full({ name: 'x'.repeat(129) }), markers, 'raw', write),
      'invalidInput',
      /128/,
    );
    expectKind(() => metadataAttributes(full({ tags: ['a,b'] }), markers, false), 'invalidInput', /comma/);
    expectKind(
      () => metadataAttributes(full({ properties: { note: 'x ]]> y', other: 'ends with \\' } }), markers, false),
      'invalidInput',
      /note.*\]\]>.*other.*backslash/s,
    );
    expectKind(() => allocationAttributes(full(), markers, 'vmdk', write), 'unsupported');
    expectKind(() => allocationAttributes(full({ type: 'kernel' }), markers, 'qcow2', write), 'unsupported');
  });
});

describe('OpenNebula mapper: states, permissions and names', () => {
  it('maps every image state, with in-use from the state and from RUNNING_VMS', () => {
    const table = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((s) => [s, stateOf(s, 0).state, stateOf(s, 0).inUse]);
    expect(table).toEqual([
      [0, 'pending', false],
      [1, 'active', false],
      [2, 'active', true],
      [3, 'disabled', false],
      [4, 'pending', false],
      [5, 'error', false],
      [6, 'active', true],
      [7, 'deleted', false],
      [8, 'active', true],
      [9, 'pending', true],
      [10, 'pending', true],
    ]);
    expect(stateOf(1, 2).inUse).toBe(true);
    expectKind(() => stateOf(11, 0), 'invalidResponse');
  });

  it('parses chmod octal permissions as oneimage chmod does', () => {
    expect(octalPermissions('600')).toEqual([1, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect(octalPermissions('644')).toEqual([1, 1, 0, 1, 0, 0, 1, 0, 0]);
    expectKind(() => octalPermissions('6000'), 'config');
  });

  it('names expired images EXPIRED_<UTC time>_<name> within 128 characters, and recovers the name', () => {
    const at = new Date(Date.UTC(2026, 4, 17, 8, 9, 10, 123));
    expect(expiredName('ttylinux', at, 'EXPIRED_')).toBe('EXPIRED_20260517T080910Z_ttylinux');
    expect(expiredName('x'.repeat(128), at, 'EXPIRED_')).toHaveLength(128);
    expect(originalName('EXPIRED_20260517T080910Z_ttylinux', 'EXPIRED_')).toBe('ttylinux');
    expect(originalName('EXPIRED_1487517413_ttylinux07', 'EXPIRED_')).toBe('ttylinux07');
    expect(originalName('ttylinux', 'EXPIRED_')).toBe('ttylinux');
  });
});
