import { describe, expect, it } from 'vitest';
import { check } from '../../scripts/check-source.mjs';

/** The line-length and comment rule Biome cannot check (scripts/check-source.mjs, run by `npm run lint`). */
describe('scripts/check-source.mjs', () => {
  it('flags lines over 120 characters, and only those', () => {
    const text = `${'x'.repeat(120)}\n${'y'.repeat(121)}\n`;
    expect(check('core/example.ts', text)).toEqual(['core/example.ts:2: line of 121 characters (at most 120)']);
  });

  it('flags comments that point at files outside the repository', () => {
    const text = [
      '// see /work/shared/reference/apis.md for the API',
      ' * as ../../../../elsewhere/notes.md says',
      '// from upstream/project/manifest.py',
      '# and ~/notes/setup.sh',
    ].join('\n');
    expect(check('core/iaas/example.ts', text)).toEqual([
      'core/iaas/example.ts:1: a comment points at /work/shared/reference/apis.md is outside the repository',
      'core/iaas/example.ts:2: a comment points at ../../../../elsewhere/notes.md is outside the repository',
      'core/iaas/example.ts:3: a comment points at upstream/project/manifest.py is not in the repository',
    ]);
    // Built from parts, so that this file's own line holds no such comment.
    const afterUrl = `const u = 'https://example.org/x'; ${'/'.repeat(2)} see /opt/docs/guide.md\n`;
    expect(check('core/example.ts', afterUrl)).toEqual([
      'core/example.ts:1: a comment points at /opt/docs/guide.md is outside the repository',
    ]);
    expect(check('test/peers/example.sh', '# and ~/notes/setup.sh\n')).toEqual([
      'test/peers/example.sh:1: a comment points at ~/notes/setup.sh is outside the repository',
    ]);
  });

  it('lets through files of the repository, built output, URLs and code that only looks like a path', () => {
    const text = [
      '// the port (core/iaas/port.ts) and ./markers.ts beside it',
      '// the build writes dist/agent/cli/main.js',
      '// https://github.com/example/project/blob/main/docs/guide.md',
      "const url = 'http://example.org/a/b.json'; // a comment with no path",
      '// BASE/admin-openrc.sh is written by the script',
    ].join('\n');
    expect(check('core/iaas/example.ts', text)).toEqual([]);
  });
});
