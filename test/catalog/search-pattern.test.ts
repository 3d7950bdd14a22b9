import { describe, expect, it } from 'vitest';
import { containsPattern, literalRegex, matchesSearch } from '../../core/catalog/query.js';

/**
 * The escaping behind search in the catalogs that take a pattern: MongoDB's regex (its contract
 * suite needs a server, so the escape is also proven here with JavaScript's regex, whose syntax
 * for these escapes is PCRE's) and the LIKE pattern of SQLite and PostgreSQL.
 */
const hostile = ['.*', '^a$', '(x|y)', '[a-z]+', '{2}', 'a\\b', 'a/b', '-', '?', '$where', 'nul\u0000byte', 'é.É'];

describe('search patterns', () => {
  it('a regex made of any text matches exactly that text, no character an operator', () => {
    for (const text of hostile) {
      const regex = new RegExp(literalRegex(text));
      expect(regex.test(`before ${text} after`), text).toBe(true);
      expect(regex.test(text.replace(/./gu, 'z')), text).toBe(text === '' || /^z*$/.test(text));
    }
    expect(new RegExp(literalRegex('a.c')).test('abc')).toBe(false);
    expect(literalRegex('nul\u0000')).toBe('nul\\x00');
  });
  it('a LIKE pattern escapes %, _ and the escape character itself', () => {
    expect(containsPattern('100%_\\x')).toBe('%100\\%\\_\\\\x%');
    expect(containsPattern('plain')).toBe('%plain%');
  });
  it('the reference semantics fold ASCII letters only, and look at name, tags and description', () => {
    const image = { name: 'Ubuntu', tags: ['LTS'], properties: { description: 'Jammy', other: 'hidden' } };
    expect(['ubuntu', 'UBU', 'lts', 'jAMMY', ''].map((s) => matchesSearch(image, s))).toEqual([
      true,
      true,
      true,
      true,
      true,
    ]);
    expect(['hidden', 'ubuntu ', 'u%'].some((s) => matchesSearch(image, s))).toBe(false);
    expect(matchesSearch({ name: 'École', tags: [], properties: {} }, 'école')).toBe(false);
  });
});
