import { describe, expect, it } from 'vitest';
import {
  bundleNameOf,
  decodeMeta,
  descriptionOf,
  ec2ArchitectureOf,
  ec2NameOf,
  encodeMeta,
  formatsOf,
  parseDescription,
  registrationOf,
  stateOf,
  tagChanges,
  tagsOf,
  toCloudImage,
} from '../../../adapters/eucalyptus/mapper.js';
import { ec2ImageStates, type Ec2Image } from '../../../core/wire/ec2/schema.js';
import { isVisorError } from '../../../core/errors.js';
import type { Markers } from '../../../core/iaas/port.js';
import { newImage } from '../../../core/image/image.js';
import type { Image, ImageDraft } from '../../../core/image/model.js';

/** The pure EC2 <-> generic translation (mapper.ts): every rule README.md states. */

const sha = 'a'.repeat(64);
const image = (draft: Partial<ImageDraft> = {}): Image =>
  newImage({
    name: 'Debian 12 (bookworm) — amd64',
    architecture: 'x86_64',
    access: 'private',
    properties: { description: 'Debian', purpose: 'tests' },
    os: { type: 'linux', distro: 'debian', version: '12' },
    minDisk: 2,
    tags: ['a,b', 'c&d'],
    ...draft,
  } as ImageDraft);
const markersOf = (i: Image, agent = 'agent-1'): Markers => ({
  agent,
  imageId: i.id,
  sha256: sha,
  revision: i.revision,
});
const ec2 = (over: Partial<Ec2Image> = {}): Ec2Image => ({
  id: 'emi-12345678',
  location: 'bucket/bundles/x.manifest.xml',
  state: 'available',
  ownerId: '123456789012',
  isPublic: false,
  architecture: 'x86_64',
  type: 'machine',
  kernelId: undefined,
  ramdiskId: undefined,
  platform: undefined,
  name: 'x',
  description: undefined,
  rootDeviceType: 'instance-store',
  rootDeviceName: '/dev/sda1',
  virtualizationType: 'hvm',
  createdAt: undefined,
  stateReason: undefined,
  tags: {},
  ...over,
});

const errorKindOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return isVisorError(e) ? e.kind : 'not a VisorError';
  }
  return 'no error';
};

describe('EC2 mapper', () => {
  it('maps every image state', () => {
    expect(Object.fromEntries(ec2ImageStates.map((s) => [s, stateOf(s)]))).toEqual({
      pending: 'pending',
      available: 'active',
      invalid: 'error',
      deregistered: 'deleted',
      transient: 'pending',
      failed: 'error',
      error: 'error',
      disabled: 'disabled',
      hidden: 'active',
      unavailable: 'error',
    });
  });

  it('maps architectures both ways and refuses the ones EC2 has not', () => {
    expect(['i386', 'x86_64', 'aarch64', 'armv7l'].map((a) => ec2ArchitectureOf(a as Image['architecture']))).toEqual([
      'i386',
      'x86_64',
      'arm64',
      'armhf',
    ]);
    expect(toCloudImage(ec2({ architecture: 'arm64' })).metadata.architecture).toBe('aarch64');
    expect(toCloudImage(ec2({ architecture: 'other' })).metadata.architecture).toBeUndefined();
    expect(errorKindOf(() => ec2ArchitectureOf('riscv64'))).toBe('unsupported');
  });

  it('derives disk and container formats from type and virtualization', () => {
    expect(formatsOf({ type: 'kernel', virtualizationType: undefined, rootDeviceType: 'instance-store' })).toEqual({
      diskFormat: 'aki',
      containerFormat: 'aki',
    });
    expect(formatsOf({ type: 'ramdisk', virtualizationType: undefined, rootDeviceType: undefined })).toEqual({
      diskFormat: 'ari',
      containerFormat: 'ari',
    });
    expect(formatsOf({ type: 'machine', virtualizationType: 'hvm', rootDeviceType: 'instance-store' })).toEqual({
      diskFormat: 'raw',
      containerFormat: 'bare',
    });
    expect(formatsOf({ type: 'machine', virtualizationType: 'paravirtual', rootDeviceType: 'instance-store' })).toEqual(
      { diskFormat: 'ami', containerFormat: 'ami' },
    );
    expect(formatsOf({ type: 'machine', virtualizationType: 'hvm', rootDeviceType: 'ebs' })).toEqual({});
  });

  it('round-trips markers, name, metadata and properties through tags', () => {
    const i = image();
    const m = markersOf(i);
    const tags = tagsOf(i, m);
    expect(tags).toMatchObject({
      'visor:agent': 'agent-1',
      'visor:image-id': i.id,
      'visor:sha256': sha,
      'visor:revision': '1',
      Name: i.name,
      purpose: 'tests',
    });
    expect(tags['description']).toBeUndefined();
    const cloud = toCloudImage(
      ec2({ tags: { ...tags, 'aws:cloudformation:stack': 'x', 'euca:x': 'y' }, description: 'Debian' }),
    );
    expect(cloud.markers).toEqual(m);
    expect(cloud.name).toBe(i.name);
    expect(cloud.metadata).toEqual({
      name: i.name,
      architecture: 'x86_64',
      type: 'machine',
      os: i.os,
      minDisk: 2,
      tags: ['a,b', 'c&d'],
      properties: { description: 'Debian', purpose: 'tests' },
    });
    expect(decodeMeta(encodeMeta(i))).toEqual({ os: i.os, minDisk: 2, tags: ['a,b', 'c&d'] });
    expect(cloud.hidden).toBe(false);
    expect(toCloudImage(ec2({ tags: tagsOf(i, m, '2026-01-01T00:00:00.000Z') })).hidden).toBe(true);
  });

  it('treats incomplete or malformed markers as not ours', () => {
    const i = image();
    const tags = tagsOf(i, markersOf(i));
    expect(toCloudImage(ec2({ tags: { ...tags, 'visor:sha256': 'nope' } })).markers).toBeUndefined();
    const { ['visor:revision']: _, ...withoutRevision } = tags;
    expect(toCloudImage(ec2({ tags: withoutRevision })).markers).toBeUndefined();
    expect(
      toCloudImage(ec2({ description: '[visor agent=a image-id=x sha256=y revision=1]' })).markers,
    ).toBeUndefined();
  });

  it('keeps markers, name and the hidden flag in the Description where there are no tags', () => {
    const i = image({ name: 'a name with [brackets] and spaces' });
    const m = markersOf(i, 'agent with spaces');
    const description = descriptionOf(i, m, false, true)!;
    expect(description.length).toBeLessThanOrEqual(255);
    expect(description.startsWith('Debian [visor agent=agent%20with%20spaces ')).toBe(true);
    expect(parseDescription(description)).toEqual({ markers: m, name: i.name, hidden: true, text: 'Debian' });
    const cloud = toCloudImage(ec2({ description, name: ec2NameOf(i, m) }));
    expect(cloud).toMatchObject({
      markers: m,
      name: i.name,
      hidden: true,
      metadata: { properties: { description: 'Debian' } },
    });
    expect(parseDescription('just words')).toEqual({ hidden: false, text: 'just words' });
    expect(
      errorKindOf(() => descriptionOf(image({ properties: { description: 'x'.repeat(200) } }), m, false, false)),
    ).toBe('invalidInput');
  });

  it('refuses what EC2 tags cannot hold, naming every field', () => {
    const i = image({
      properties: {
        Name: 'x',
        'visor:agent': 'x',
        'aws:x': 'y',
        long: 'v'.repeat(256),
        ['k'.repeat(130)]: 'v',
        description: 'd'.repeat(256),
      },
    });
    try {
      tagsOf(i, markersOf(i));
      expect.unreachable();
    } catch (error) {
      expect(isVisorError(error, 'invalidInput')).toBe(true);
      const paths = ((error as { issues: Array<{ path: string }> }).issues ?? []).map((x) => x.path).sort();
      expect(paths).toEqual(
        [
          'properties.Name',
          'properties.aws:x',
          'properties.description',
          `properties.${'k'.repeat(130)}`,
          'properties.long',
          'properties.visor:agent',
        ].sort(),
      );
    }
  });

  it('changes only the tags it owns', () => {
    expect(
      tagChanges(
        { Name: 'old', 'visor:revision': '1', gone: 'x', 'aws:x': 'keep', kept: 'same' },
        { Name: 'new', 'visor:revision': '2', kept: 'same' },
      ),
    ).toEqual({
      set: { Name: 'new', 'visor:revision': '2' },
      remove: ['gone'],
    });
  });

  it("names bundles deterministically and EC2 images within EC2's rules", () => {
    const i = image();
    const m = markersOf(i);
    expect(bundleNameOf(m)).toBe(bundleNameOf({ ...m, revision: 9 } as Markers));
    expect(bundleNameOf(m)).not.toBe(bundleNameOf({ ...m, sha256: 'b'.repeat(64) }));
    expect(bundleNameOf(m)).not.toBe(bundleNameOf({ ...m, agent: 'other' }));
    const name = ec2NameOf(image({ name: 'é'.repeat(255) }), m);
    expect(name).toMatch(/^[A-Za-z0-9()./_-]{3,128}$/);
    expect(ec2NameOf(i, m)).toMatch(/^Debian_12_\(bookworm\)___amd64-[0-9a-f]{8}-aaaaaaaa$/);
  });

  it('decides how an image registers, before anything is sent', () => {
    const m = (i: Image) => markersOf(i);
    const raw = image();
    expect(registrationOf(raw, m(raw), 'raw', { tags: true })).toMatchObject({
      type: 'machine',
      virtualizationType: 'hvm',
      architecture: 'x86_64',
      description: 'Debian',
    });
    const kernel = image({ type: 'kernel' });
    expect(registrationOf(kernel, m(kernel), 'aki', { tags: true })).toMatchObject({
      type: 'kernel',
      manifestKernelId: 'true',
    });
    const ramdisk = image({ type: 'ramdisk' });
    expect(registrationOf(ramdisk, m(ramdisk), 'raw', { tags: true })).toMatchObject({
      type: 'ramdisk',
      manifestRamdiskId: 'true',
    });
    expect(
      registrationOf(raw, m(raw), 'ami', { tags: true, kernelId: 'eki-11111111', ramdiskId: 'eri-22222222' }),
    ).toMatchObject({ virtualizationType: 'paravirtual', kernelId: 'eki-11111111', manifestKernelId: 'eki-11111111' });
    expect(errorKindOf(() => registrationOf(raw, m(raw), 'ami', { tags: true }))).toBe('invalidInput');
    expect(errorKindOf(() => registrationOf(kernel, m(kernel), 'ari', { tags: true }))).toBe('unsupported');
    expect(errorKindOf(() => registrationOf(raw, m(raw), 'aki', { tags: true }))).toBe('unsupported');
  });
});
