import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { bufferReader, inspectImage, openFileReader, type InspectOptions } from '../../core/formats/index.js';
import { isVisorError, type VisorError } from '../../core/errors.js';
import { convertRaw, craftIso, createImage, patchFile, scratch, writeRawData } from './images.js';
import { requirePeer } from '../peers/index.js';
import { qemuImg } from './qemu.js';

const fixtures = join(import.meta.dirname, 'fixtures');

/** Inspects a file and returns the error it must throw. */
async function refusal(path: string, options: InspectOptions = {}): Promise<VisorError> {
  const reader = await openFileReader(path);
  try {
    await inspectImage(reader, options);
  } catch (error) {
    if (isVisorError(error)) return error;
    throw error;
  } finally {
    await reader.close();
  }
  throw new Error(`${path} was accepted`);
}

describe('formats: unsafe and malformed images are refused with a clear reason', () => {
  let skipReason: string | undefined;
  let dir: Awaited<ReturnType<typeof scratch>>;
  let raw = '';

  beforeAll(async () => {
    skipReason = (await requirePeer('qemu-img')).skip;
    dir = await scratch('unsafe');
    raw = dir.path('data.raw');
    await writeRawData(raw, 4 * 1024 * 1024);
  }, 600_000);
  afterAll(() => dir?.cleanup());

  const needQemu = (ctx: TestContext) => {
    if (skipReason) ctx.skip(skipReason);
  };

  describe('qcow2', () => {
    it('refuses a backing file, naming it (qemu-img create -b /etc/passwd)', async (ctx) => {
      needQemu(ctx);
      const path = dir.path('backing.qcow2');
      qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', path, '1M');
      const error = await refusal(path, { declared: 'qcow2' });
      expect(error.kind).toBe('unsafe');
      expect(error.message).toContain('qcow2 image has a backing file: "/etc/passwd"');
    });

    it('refuses an external data file, naming it (-o data_file=...)', async (ctx) => {
      needQemu(ctx);
      const path = dir.path('datafile.qcow2');
      createImage(path, 'qcow2', '1M', `data_file=${dir.path('data-file.raw')}`);
      const error = await refusal(path, { declared: 'qcow2' });
      expect(error.kind).toBe('unsafe');
      expect(error.message).toContain(`names an external data file: "${dir.path('data-file.raw')}"`);
    });

    it('refuses the data-file feature bit even without the extension naming the file', async (ctx) => {
      needQemu(ctx);
      const path = createImage(dir.path('databit.qcow2'), 'qcow2', '1M');
      await patchFile(path, 72 + 7, Buffer.from([0x04]));
      expect((await refusal(path)).message).toContain('external data file');
    });

    it('refuses unknown incompatible features, and qcow versions it does not know', async (ctx) => {
      needQemu(ctx);
      const unknown = createImage(dir.path('features.qcow2'), 'qcow2', '1M');
      await patchFile(unknown, 72 + 2, Buffer.from([0x01])); // bit 40
      expect(await refusal(unknown)).toMatchObject({
        kind: 'unsafe',
        message: expect.stringContaining('unknown incompatible feature bits 40'),
      });

      const v1 = createImage(dir.path('v1.qcow2'), 'qcow2', '1M');
      await patchFile(v1, 4, Buffer.from([0, 0, 0, 1]));
      expect(await refusal(v1)).toMatchObject({
        kind: 'unsafe',
        message: expect.stringContaining('qcow version 1 images are not accepted'),
      });

      const v4 = createImage(dir.path('v4.qcow2'), 'qcow2', '1M');
      await patchFile(v4, 4, Buffer.from([0, 0, 0, 4]));
      expect(await refusal(v4)).toMatchObject({
        kind: 'unsafe',
        message: expect.stringContaining('unsupported qcow2 version 4'),
      });
    });

    it('refuses an image marked corrupt as invalid input', async (ctx) => {
      needQemu(ctx);
      const path = createImage(dir.path('corrupt.qcow2'), 'qcow2', '1M');
      await patchFile(path, 72 + 7, Buffer.from([0x02]));
      expect(await refusal(path)).toMatchObject({
        kind: 'invalidInput',
        message: expect.stringContaining('marked corrupt'),
      });
    });

    it('refuses truncated images: a cut header, an L1 table past the end of the file', async (ctx) => {
      needQemu(ctx);
      const cut = createImage(dir.path('cut.qcow2'), 'qcow2', '1G');
      await truncate(cut, 80);
      expect(await refusal(cut)).toMatchObject({
        kind: 'invalidInput',
        message: expect.stringContaining('truncated image: qcow2 version 3 header'),
      });

      const l1 = createImage(dir.path('l1.qcow2'), 'qcow2', '1G');
      const size = (await readFile(l1)).length;
      await truncate(l1, size - 8);
      expect(await refusal(l1, { declared: 'qcow2' })).toMatchObject({
        kind: 'invalidInput',
        message: expect.stringMatching(/truncated qcow2 image: its L1 table .* lies beyond the end of the file/),
      });
    });
  });

  describe('VMDK', () => {
    it('refuses a text descriptor naming a host file (CVE-2022-47951), which qemu-img would follow', async (ctx) => {
      needQemu(ctx);
      const fixture = join(fixtures, 'passwd-descriptor.vmdk');
      // The threat is real: given this descriptor as a vmdk, qemu-img reads /etc/passwd.
      qemuImg('convert', '-f', 'vmdk', '-O', 'raw', fixture, dir.path('leak.raw'));
      expect((await readFile(dir.path('leak.raw'))).subarray(0, 64).toString()).toBe(
        (await readFile('/etc/passwd')).subarray(0, 64).toString(),
      );

      for (const declared of ['vmdk', 'raw', undefined] as const) {
        const error = await refusal(fixture, declared ? { declared } : {});
        expect(error.kind).toBe('unsafe');
        expect(error.message).toContain(
          'VMDK descriptor file (createType "monolithicFlat") keeps its data in other files: FLAT "/etc/passwd"',
        );
      }
      expect((await refusal(fixture, { declared: 'raw' })).message).toContain('declared raw, but the content is vmdk');
    });

    it('refuses a split descriptor naming sibling files by relative name (which Glance lets through)', async () => {
      const error = await refusal(join(fixtures, 'sibling-descriptor.vmdk'), { declared: 'vmdk' });
      expect(error.kind).toBe('unsafe');
      expect(error.message).toContain('SPARSE "disk-s001.vmdk", SPARSE "disk-s002.vmdk"');
    });

    it('refuses a monolithicSparse VMDK whose embedded descriptor names another extent', async (ctx) => {
      needQemu(ctx);
      const path = createImage(dir.path('extra-extent.vmdk'), 'vmdk', '64M');
      await rewriteDescriptor(path, (text) => text.replace(/(RW \d+ SPARSE "[^"]+")/, '$1\nRW 2 FLAT "/etc/passwd" 0'));
      const error = await refusal(path, { declared: 'vmdk' });
      expect(error.kind).toBe('unsafe');
      expect(error.message).toContain('VMDK descriptor names extents other than the file itself: FLAT "/etc/passwd"');
    });

    it("refuses a sparse VMDK of capacity 0, with which qemu opens its descriptor's extents", async (ctx) => {
      needQemu(ctx);
      const path = createImage(dir.path('capacity0.vmdk'), 'vmdk', '64M');
      await rewriteDescriptor(path, (text) =>
        text
          .replace('monolithicSparse', 'monolithicFlat')
          .replace(/RW \d+ SPARSE "[^"]+"/, 'RW 2 FLAT "/etc/passwd" 0'),
      );
      await patchFile(path, 12, Buffer.alloc(8));
      // qemu-img would indeed read /etc/passwd through this file.
      expect(qemuImg('info', '--output=json', '-f', 'vmdk', path)).toContain('/etc/passwd');
      const error = await refusal(path, { declared: 'vmdk' });
      expect(error.message).toContain('capacity 0');
      expect(error.message).toContain('FLAT "/etc/passwd"');
    });

    it(
      'refuses an embedded descriptor whose createType is not a ' +
        'single-file type, or with lines it does not understand',
      async (ctx) => {
        needQemu(ctx);
        const flat = createImage(dir.path('flat-type.vmdk'), 'vmdk', '64M');
        await rewriteDescriptor(flat, (text) => text.replace('monolithicSparse', 'monolithicFlat'));
        expect((await refusal(flat)).message).toContain('VMDK createType "monolithicFlat" is not a single-file type');

        const odd = createImage(dir.path('odd-line.vmdk'), 'vmdk', '64M');
        await rewriteDescriptor(odd, (text) => text.replace('# Extent description', 'include "/etc/passwd"'));
        expect((await refusal(odd)).message).toContain('is not understood: "include \\"/etc/passwd\\""');
      },
    );

    it('checks a streamOptimized footer: refused when invalid, accepted when consistent', async (ctx) => {
      needQemu(ctx);
      const path = convertRaw(raw, dir.path('footer.vmdk'), 'vmdk', 'subformat=streamOptimized');
      const original = await readFile(path);
      const header = Buffer.from(original.subarray(0, 512));
      const withFooter = Buffer.concat([original, Buffer.alloc(1536)]);
      withFooter.writeBigUInt64LE(0xffffffffffffffffn, 56);
      await writeFile(path, withFooter);
      expect(await refusal(path)).toMatchObject({
        kind: 'invalidInput',
        message: expect.stringContaining('VMDK footer is invalid'),
      });

      const end = withFooter.length;
      withFooter.writeUInt32LE(3, end - 1536 + 12); // footer marker
      header.copy(withFooter, end - 1024); // the footer: the original header, grain directory in place
      await writeFile(path, withFooter);
      const reader = await openFileReader(path);
      const report = await inspectImage(reader, { declared: 'vmdk' }).finally(() => reader.close());
      expect(report).toMatchObject({ format: 'vmdk', subformat: 'streamOptimized', virtualSize: 4 * 1024 * 1024 });
    });
  });

  describe('declared versus detected format', () => {
    it('refuses a qcow2 declared as raw (the classic attack) and raw declared as qcow2', async (ctx) => {
      needQemu(ctx);
      const qcow2 = createImage(dir.path('declared.qcow2'), 'qcow2', '1M');
      const asRaw = await refusal(qcow2, { declared: 'raw' });
      expect(asRaw.kind).toBe('unsafe');
      expect(asRaw.message).toContain(
        'declared raw, but the content is qcow2 (a format header inside an image declared raw',
      );
      expect(await refusal(raw, { declared: 'qcow2' })).toMatchObject({
        kind: 'unsafe',
        message: expect.stringContaining('declared qcow2, but the content is raw data'),
      });
    });

    it(
      'refuses every other mismatch too: vmdk, vhd, vhdx, ' + 'vdi as raw; raw as ami when it is qcow2; iso as raw',
      async (ctx) => {
        needQemu(ctx);
        for (const [qemuFormat, detected] of [
          ['vmdk', 'vmdk'],
          ['vpc', 'vhd'],
          ['vhdx', 'vhdx'],
          ['vdi', 'vdi'],
        ] as const) {
          const path = createImage(dir.path(`as-raw.${qemuFormat}`), qemuFormat, '8M');
          expect((await refusal(path, { declared: 'raw' })).message).toContain(
            `declared raw, but the content is ${detected}`,
          );
        }
        expect(
          (await refusal(createImage(dir.path('ami.qcow2'), 'qcow2', '1M'), { declared: 'ami' })).message,
        ).toContain('declared ami, but the content is qcow2');
        await expect(inspectImage(bufferReader(craftIso()), { declared: 'raw' })).rejects.toMatchObject({
          kind: 'unsafe',
          message: expect.stringContaining('declared raw, but the content is iso'),
        });
      },
    );

    it('names every problem at once (a mismatch and a backing file)', async (ctx) => {
      needQemu(ctx);
      const path = dir.path('two-problems.qcow2');
      qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', path, '1M');
      const error = await refusal(path, { declared: 'raw' });
      expect(error.message).toContain('declared raw, but the content is qcow2');
      expect(error.message).toContain('backing file: "/etc/passwd"');
      expect(error.details?.['problems']).toHaveLength(2);
    });
  });

  describe('one format hidden inside another', () => {
    it('refuses an ISO carrying a qcow2 header in its system area (what Glance refuses)', async (ctx) => {
      needQemu(ctx);
      const qcow2 = await readFile(createImage(dir.path('hidden.qcow2'), 'qcow2', '64M'));
      const iso = craftIso({ systemArea: qcow2.subarray(0, 32 * 1024) });
      const error = await inspectImage(bufferReader(iso), { declared: 'iso' }).catch((e: unknown) => e);
      expect(error).toMatchObject({
        kind: 'unsafe',
        message: expect.stringContaining('content matches several formats at once (qcow2, iso)'),
      });
    });

    it('refuses a qcow2 followed by a VHD footer', async (ctx) => {
      needQemu(ctx);
      const qcow2 = await readFile(createImage(dir.path('tail.qcow2'), 'qcow2', '1M'));
      const vhd = await readFile(createImage(dir.path('tail.vhd'), 'vpc', '1M', 'subformat=fixed'));
      await writeFile(dir.path('both.img'), Buffer.concat([qcow2, vhd.subarray(vhd.length - 512)]));
      expect((await refusal(dir.path('both.img'))).message).toContain('several formats at once (qcow2, vhd)');
    });
  });

  describe('VHD, VDI and formats refused outright', () => {
    it('refuses truncated VHDs: footer missing, a block past the end, a fixed disk cut short', async (ctx) => {
      needQemu(ctx);
      const dynamic = await readFile(convertRaw(raw, dir.path('dyn.vhd'), 'vpc'));
      await writeFile(dir.path('no-footer.vhd'), dynamic.subarray(0, dynamic.length - 512));
      expect(await refusal(dir.path('no-footer.vhd'), { declared: 'vhd' })).toMatchObject({
        kind: 'invalidInput',
        message: expect.stringContaining('the footer at the end of the file is missing'),
      });

      const footer = dynamic.subarray(dynamic.length - 512);
      await writeFile(
        dir.path('short-block.vhd'),
        Buffer.concat([dynamic.subarray(0, dynamic.length - 512 - 1024 * 1024), footer]),
      );
      expect(await refusal(dir.path('short-block.vhd'), { declared: 'vhd' })).toMatchObject({
        kind: 'invalidInput',
        message: expect.stringMatching(/truncated VHD: block \d+ .* lies beyond the end of the data/),
      });

      const fixed = createImage(dir.path('fixed.vhd'), 'vpc', '4M', 'subformat=fixed');
      const size = (await readFile(fixed)).length;
      await truncate(fixed, size - 1024);
      // Without its footer a fixed VHD is indistinguishable from raw data: a mismatch.
      expect((await refusal(fixed, { declared: 'vhd' })).message).toContain(
        'declared vhd, but the content is raw data',
      );
    });

    it('refuses a differencing VHD, naming its parent', async (ctx) => {
      needQemu(ctx);
      const vhd = await readFile(createImage(dir.path('diff.vhd'), 'vpc', '8M'));
      const dynOffset = Number(vhd.readBigUInt64BE(16));
      for (const at of [0, vhd.length - 512]) {
        vhd.writeUInt32BE(4, at + 60);
        vhdChecksum(vhd.subarray(at, at + 512), 64);
      }
      const dyn = vhd.subarray(dynOffset, dynOffset + 1024);
      Buffer.from('../parent.vhd', 'utf16le').swap16().copy(dyn, 64);
      vhdChecksum(dyn, 36);
      await writeFile(dir.path('diff.vhd'), vhd);
      expect(await refusal(dir.path('diff.vhd'), { declared: 'vhd' })).toMatchObject({
        kind: 'unsafe',
        message: expect.stringContaining('differencing VHD depends on a parent disk: "../parent.vhd"'),
      });
    });

    it('refuses a differencing VDI', async (ctx) => {
      needQemu(ctx);
      const path = createImage(dir.path('diff.vdi'), 'vdi', '8M');
      await patchFile(path, 0x4c, Buffer.from([4, 0, 0, 0]));
      expect(await refusal(path, { declared: 'vdi' })).toMatchObject({
        kind: 'unsafe',
        message: expect.stringContaining('differencing VDI image depends on a parent image'),
      });
    });

    it('refuses QED and LUKS images whatever is declared', async (ctx) => {
      needQemu(ctx);
      expect((await refusal(createImage(dir.path('x.qed'), 'qed', '8M'), { declared: 'raw' })).message).toContain(
        'QED images are not accepted',
      );
      const luks = dir.path('x.luks');
      qemuImg(
        'create',
        '-q',
        '--object',
        'secret,id=sec0,data=visor',
        '-f',
        'luks',
        '-o',
        'key-secret=sec0,iter-time=10',
        luks,
        '1M',
      );
      expect((await refusal(luks)).message).toContain('LUKS-encrypted images are not accepted');
    });
  });
});

/** Rewrites the embedded descriptor of a sparse VMDK in place (same region, NUL-padded). */
async function rewriteDescriptor(path: string, change: (text: string) => string): Promise<void> {
  const data = await readFile(path);
  const offset = Number(data.readBigUInt64LE(28)) * 512;
  const size = Number(data.readBigUInt64LE(36)) * 512;
  const region = data.subarray(offset, offset + size);
  const nul = region.indexOf(0);
  const text = change(region.subarray(0, nul < 0 ? size : nul).toString('latin1'));
  if (text.length > size) throw new Error('descriptor does not fit');
  region.fill(0);
  region.write(text, 'latin1');
  await writeFile(path, data);
}

function vhdChecksum(block: Buffer, at: number): void {
  block.writeUInt32BE(0, at);
  let sum = 0;
  for (const b of block) sum += b;
  block.writeUInt32BE(~sum >>> 0, at);
}
