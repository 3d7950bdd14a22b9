import { describe, expect, it } from 'vitest';
import { isVisorError, ValidationError } from '../errors.js';
import { applyChanges, newImage, validateImage } from './image.js';
import { canTransition } from './lifecycle.js';
import { imageStatuses, type ImageDraft } from './model.js';

const clock = { now: () => new Date('2026-01-01T00:00:00.000Z') };

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).kind).toBe('invalidInput');
    return (error as ValidationError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a validation error');
}

describe('image model', () => {
  it('fills in defaults for a new image', () => {
    const image = newImage({ name: 'CentOS 6.2', architecture: 'i386' }, clock);
    expect(image).toMatchObject({
      name: 'CentOS 6.2',
      architecture: 'i386',
      type: 'machine',
      access: 'private',
      status: 'locked',
      members: [],
      tags: [],
      properties: {},
      checksums: {},
      revision: 1,
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
    });
    expect(image.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('names every bad field at once', () => {
    const issues = issuesOf(() =>
      newImage({
        name: '',
        architecture: 'sparc',
        diskFormat: 'floppy',
        access: 'secret',
        size: -3,
        minRam: 1.5,
        checksums: { sha256: 'ABC' },
        tags: ['a', 'a'],
        properties: { 'bad key': 'x', name: 'reserved', ok: 7 },
        colour: 'red',
      } as unknown as ImageDraft),
    );
    const paths = issues.map((i) => i.split(':')[0]);
    expect(paths).toEqual(
      expect.arrayContaining([
        'name',
        'architecture',
        'diskFormat',
        'access',
        'size',
        'minRam',
        'checksums.sha256',
        'tags',
        'properties.bad key',
        'properties.name',
        'properties.ok',
        'colour',
      ]),
    );
    expect(issues.find((i) => i.startsWith('colour'))).toContain('unknown key');
  });

  it('requires name and architecture', () => {
    expect(issuesOf(() => newImage({} as ImageDraft)).map((i) => i.split(':')[0])).toEqual(
      expect.arrayContaining(['name', 'architecture']),
    );
  });

  it('checks rules across fields', () => {
    const base = newImage({ name: 'k', architecture: 'x86_64' }, clock);
    expect(issuesOf(() => validateImage({ ...base, type: 'kernel', kernelId: base.id }))).toEqual([
      expect.stringMatching(/^kernelId: only a machine image/),
    ]);
    expect(issuesOf(() => validateImage({ ...base, status: 'available' }))).toEqual([
      expect.stringMatching(/^location: an available image must have a location/),
    ]);
    expect(issuesOf(() => validateImage({ ...base, access: 'private', members: ['bob'] }))).toEqual([
      expect.stringMatching(/^members: only a shared image/),
    ]);
  });

  it('refuses control characters in names (they end up in terminals and XML)', () => {
    expect(issuesOf(() => newImage({ name: 'evil\u001b[31m', architecture: 'x86_64' }))[0]).toMatch(
      /^name: must not contain control characters/,
    );
  });

  it('applies changes: merge properties, clear with null, bump revision, keep id and createdAt', () => {
    const image = newImage({ name: 'a', architecture: 'x86_64', minDisk: 10, properties: { x: '1', y: '2' } }, clock);
    const later = { now: () => new Date('2026-02-01T00:00:00.000Z') };
    const next = applyChanges(image, { minDisk: null, properties: { x: null, z: '3' }, access: 'private' }, later);
    expect(next).toMatchObject({
      id: image.id,
      createdAt: image.createdAt,
      updatedAt: '2026-02-01T00:00:00.000Z',
      revision: 2,
      access: 'private',
      properties: { y: '2', z: '3' },
    });
    expect('minDisk' in next).toBe(false);
    expect(image.properties).toEqual({ x: '1', y: '2' }); // the input is not mutated
  });

  it('never moves updatedAt backwards', () => {
    const image = newImage({ name: 'a', architecture: 'x86_64' }, clock);
    const earlier = { now: () => new Date('2025-01-01T00:00:00.000Z') };
    expect(applyChanges(image, { name: 'b' }, earlier).updatedAt).toBe(image.updatedAt);
  });

  it('refuses changes to fields that never change', () => {
    const image = newImage({ name: 'a', architecture: 'x86_64' }, clock);
    const issues = issuesOf(() => applyChanges(image, { id: 'x', revision: 9, createdAt: 'now' } as never));
    expect(issues.map((i) => i.split(':')[0]).sort()).toEqual(['createdAt', 'id', 'revision']);
  });

  it('follows the status lifecycle', () => {
    expect(canTransition('locked', 'uploading')).toBe(true);
    expect(canTransition('uploading', 'available')).toBe(true);
    expect(canTransition('uploading', 'error')).toBe(true);
    expect(canTransition('error', 'uploading')).toBe(true);
    expect(canTransition('available', 'locked')).toBe(false);
    // Out of a soft delete only by a restore, to what the bits allow.
    const out = ['deleted', 'available', 'locked'];
    for (const s of imageStatuses) expect(canTransition('deleted', s)).toBe(out.includes(s));
    const image = newImage({ name: 'a', architecture: 'x86_64' }, clock);
    const deleted = applyChanges(image, { status: 'deleted' }, clock);
    let error: unknown;
    try {
      applyChanges(deleted, { status: 'uploading' }, clock);
    } catch (e) {
      error = e;
    }
    expect(isVisorError(error, 'conflict')).toBe(true);
  });
});
