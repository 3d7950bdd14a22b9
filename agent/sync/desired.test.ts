import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { newImage } from '../../core/image/image.js';
import type { Image, ImageDraft } from '../../core/image/model.js';
import { nameRenderer, renderName } from './desired.js';

const os = { distro: 'debian', version: '12' };
const debian = { name: 'Debian 12', architecture: 'x86_64', diskFormat: 'qcow2', os };
const image = (extra: Partial<ImageDraft> = {}): Image => newImage({ ...debian, ...extra } as ImageDraft);

/** The naming template, as documented: each {key} replaced, unknown keys empty, the result trimmed, never empty. */
function reference(template: string, i: Image): string {
  const values: Record<string, string> = {
    name: i.name,
    id: i.id,
    shortId: i.id.slice(0, 8),
    architecture: i.architecture,
    format: i.diskFormat ?? '',
    os_distro: i.os?.distro ?? '',
    os_version: i.os?.version ?? '',
    revision: String(i.revision),
  };
  const value = (_: string, key: string) => (Object.hasOwn(values, key) ? values[key]! : '');
  return template.replace(/\{([^}]*)\}/g, value).trim() || i.name;
}

describe('naming templates', () => {
  it('renders every documented key', () => {
    const i = image();
    const rendered = renderName('{name}-{shortId} [{architecture}/{format}] {os_distro}{os_version} r{revision}', i);
    expect(rendered).toBe(`Debian 12-${i.id.slice(0, 8)} [x86_64/qcow2] debian12 r1`);
    expect(renderName('{id}', i)).toBe(i.id);
  });

  it('renders unknown keys (also prototype names) empty, trims, and falls back to the name', () => {
    const i = image();
    expect(renderName('{toString}{constructor}x{nope}', i)).toBe('x');
    expect(renderName('  {nope}  ', i)).toBe('Debian 12');
    expect(renderName('{name}', image({ name: '  padded  ' }))).toBe('padded');
  });

  it('compiled once, renders as the template says for any template and image', () => {
    const names = ['name', 'id', 'shortId', 'architecture', 'format', 'os_distro', 'os_version', 'revision'];
    const keys = names.map((k) => `{${k}}`);
    const piece = fc.oneof(fc.string({ maxLength: 5 }), fc.constantFrom(...keys, '{x}', '{', '}'));
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 6 }), fc.string({ minLength: 1, maxLength: 20 }), (pieces, name) => {
        const template = pieces.join('');
        const i = image({ name });
        expect(nameRenderer(template)(i)).toBe(reference(template, i));
      }),
    );
  });
});
