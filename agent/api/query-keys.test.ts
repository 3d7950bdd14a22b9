import { describe, expect, it } from 'vitest';
import { queryFromWire } from './wire.js';
import { editDistance } from './query-keys.js';

const parse = (query: string) => queryFromWire(new URLSearchParams(query), 100);

describe('query keys', () => {
  it('counts edits', () => {
    expect(editDistance('archtecture', 'architecture', 2)).toBe(1);
    expect(editDistance('kitten', 'sitting', 5)).toBe(3);
    expect(editDistance('abc', 'abcdef', 2)).toBe(3);
  });

  it('refuses a key within two edits of an attribute, naming it', () => {
    expect(() => parse('archtecture=x86_64')).toThrow(/did you mean "architecture"/);
    expect(() => parse('os_distor=ubuntu')).toThrow(/did you mean "os_distro"/);
    expect(() => parse('nme=a')).toThrow(/did you mean "name"/);
  });

  it('keeps custom properties filterable, bare or as property.KEY', () => {
    expect(parse('flavour=small').filters).toEqual({ 'properties.flavour': 'small' });
    expect(parse('p1=x').filters).toEqual({ 'properties.p1': 'x' });
    expect(parse('property.archtecture=x').filters).toEqual({ 'properties.archtecture': 'x' });
    expect(() => parse('property.=x')).toThrow(/not a property name/);
  });

  it("takes Glance's sort_key, sort_dir and visibility, refuses the keys visor lacks", () => {
    expect(parse('sort_key=name&sort_dir=desc&visibility=private')).toMatchObject({
      sort: 'name',
      dir: 'desc',
      filters: { access: 'private' },
    });
    expect(() => parse('size_max=10')).toThrow(/"size_max" is a Glance query key/);
    expect(() => parse('changes-since=2020-01-01')).toThrow(/Glance/);
    expect(() => parse('visibility=all')).toThrow(/public, private and shared/);
    expect(() => parse('constructor=x')).not.toThrow(/Glance/);
  });
});
