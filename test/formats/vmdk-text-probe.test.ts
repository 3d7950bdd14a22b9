import { describe, expect, it } from 'vitest';
import { bufferReader, detectFormat } from '../../core/formats/index.js';
import { hasDescriptorLine } from '../../core/formats/vmdk.js';

/** What the multiline patterns the probe used to run said: the reference for every case below. */
const multiline = (text: string) =>
  /^\s*#\s*disk\s*descriptorfile/im.test(text) ||
  /^\s*createtype\s*=/im.test(text) ||
  /^\s*version\s*=\s*\d/im.test(text);

describe('VMDK text descriptor probe', () => {
  it('takes what the multiline patterns took, and nothing else', () => {
    const cases = [
      '',
      'version=1',
      '  version = 3\n',
      'x\n\n  \n# Disk DescriptorFile',
      '#\n disk\n descriptorfile',
      '\n\n\r\n createType="monolithicSparse"',
      'x\u2028 createtype =',
      '\tCREATETYPE=',
      'a version=1',
      'a\nversion=',
      'a\nversion=x\n version=2',
      'ab#disk descriptorfile',
      'aversion=1\nb',
      ' \n ',
      'plain text',
    ];
    // And many small random texts made of the patterns' own pieces.
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const pieces = [' ', '\n', '\r', '\t', '#', 'disk', 'descriptorfile', 'version', '=', '1', 'createtype', 'x'];
    for (let i = 0; i < 2000; i++)
      cases.push(Array.from({ length: Math.floor(random() * 12) }, () => pieces[Math.floor(random() * 12)]).join(''));
    const differing = cases.filter((text) => hasDescriptorLine(text) !== multiline(text));
    expect(differing).toEqual([]);
    expect(cases.filter(hasDescriptorLine).length).toBeGreaterThan(20);
  });

  // The multiline patterns retried from every line start of a blank run: quadratic, about a minute
  // of CPU for 64 KiB of newlines, on the request thread of an upload. Each of these is linear now
  // (well within the test's 5 s limit, where the old patterns took minutes).
  it.each([
    ['newlines', '\n'],
    ['carriage returns', '\r'],
    ['blank lines with spaces', ' \n'],
    ['comment lines', '# \n'],
  ])('reads a 64 KiB upload of %s as raw, in linear time', async (_name, unit) => {
    const data = Buffer.from(unit.repeat(Math.ceil(65536 / unit.length)).slice(0, 65536), 'latin1');
    const detection = await detectFormat(bufferReader(data));
    expect(detection.format).toBe('raw');
    expect(detection.matches).toEqual([]);
  });

  it('still finds a descriptor after 60 KiB of blank lines', async () => {
    const data = Buffer.from(`${'\n'.repeat(60 * 1024)}# Disk DescriptorFile\nversion=1\ncreateType="vmfs"\n`);
    expect((await detectFormat(bufferReader(data))).format).toBe('vmdk');
  });
});
