import { spawnSync } from 'node:child_process';
import { chmod, readdir, readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { convertImage, qemuImgInfo } from '../../core/formats/index.js';
import type { DiskFormat } from '../../core/image/model.js';
import { buildTar, convertRaw, ovfDescriptor, patchFile, scratch, writeRawData } from './images.js';
import { requirePeer } from '../peers/index.js';
import { qemuImg } from './qemu.js';
import { skipAllowed } from '../setup/allowed-skips.js';

const MiB = 1024 * 1024;

describe('formats: conversion with qemu-img', () => {
  let skipReason: string | undefined;
  let dir: Awaited<ReturnType<typeof scratch>>;
  let raw = '';
  let data: Buffer = Buffer.alloc(0);

  beforeAll(async () => {
    skipReason = (await requirePeer('qemu-img')).skip;
    dir = await scratch('convert');
    raw = dir.path('source.raw');
    data = await writeRawData(raw, 4 * MiB);
  }, 600_000);
  afterAll(() => dir?.cleanup());

  const needQemu = (ctx: TestContext) => {
    if (skipReason) ctx.skip(skipReason);
  };
  /** `qemu-img compare -f raw -F raw`: exit 0 when the two disks read the same. */
  const sameContent = (a: string, b: string) =>
    spawnSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', a, b]).status === 0;
  /** Files left in the scratch folder whose name starts with `prefix` (temp names included). */
  const leftovers = async (prefix: string) =>
    (await readdir(dir.dir)).filter((n) => n.startsWith(prefix) || n.startsWith(`.${prefix}`));
  /** A qemu-img stand-in that records its arguments, then runs the real one (or `body`). */
  const recorder = async (name: string, body = 'exec qemu-img "$@"') => {
    const script = dir.path(`${name}.sh`);
    await writeFile(script, `#!/bin/sh\nprintf '%s\\n' "$@" > '${dir.path(`${name}.args`)}'\n${body}\n`);
    await chmod(script, 0o755);
    return { script, args: async () => (await readFile(dir.path(`${name}.args`), 'utf8')).trim().split('\n') };
  };

  it('round-trips raw -> qcow2 -> raw with identical content', async (ctx) => {
    needQemu(ctx);
    const qcow2 = await convertImage({ input: raw, from: 'raw', to: 'qcow2', output: dir.path('rt.qcow2') });
    expect(qcow2).toMatchObject({
      format: 'qcow2',
      virtualSize: 4 * MiB,
      input: { format: 'raw', virtualSize: 4 * MiB },
    });
    expect((await qemuImgInfo(dir.path('rt.qcow2'), 'qcow2')).format).toBe('qcow2');
    const back = await convertImage({
      input: dir.path('rt.qcow2'),
      from: 'qcow2',
      to: 'raw',
      output: dir.path('rt.raw'),
    });
    expect(back).toMatchObject({ format: 'raw', size: 4 * MiB, virtualSize: 4 * MiB });
    expect(sameContent(raw, dir.path('rt.raw'))).toBe(true);
    expect((await readFile(dir.path('rt.raw'))).equals(data)).toBe(true);
    expect(await leftovers('.rt')).toEqual([]);
  });

  it.for([
    ['vmdk', 'vmdk', { subformat: 'streamOptimized' }],
    ['vmdk', 'vmdk', { subformat: 'monolithicSparse' }],
    ['vhd', 'vpc', {}],
    ['vhdx', 'vhdx', {}],
    ['vdi', 'vdi', {}],
    ['ploop', 'parallels', {}],
  ] as [DiskFormat, string, Record<string, string>][])(
    'writes %s and reads it back to the same raw content',
    async ([format, qemuFormat, outputOptions], ctx) => {
      needQemu(ctx);
      const name = `w-${format}-${outputOptions['subformat'] ?? 'default'}`;
      const converted = await convertImage({
        input: raw,
        from: 'raw',
        to: format,
        output: dir.path(`${name}.img`),
        outputOptions,
      });
      expect(converted.format).toBe(format);
      expect((await qemuImgInfo(dir.path(`${name}.img`), format)).format).toBe(qemuFormat);
      // Written under the target's own name: a VMDK's extent line names the final file.
      if (format === 'vmdk')
        expect((await readFile(dir.path(`${name}.img`))).subarray(0, 64 * 1024).toString('latin1')).toContain(
          `SPARSE "${name}.img"`,
        );
      expect(await leftovers(`.${name}.img.`)).toEqual([]);
      await convertImage({ input: dir.path(`${name}.img`), from: format, to: 'raw', output: dir.path(`${name}.raw`) });
      expect(sameContent(raw, dir.path(`${name}.raw`))).toBe(true);
    },
  );

  it('passes the source format explicitly and the inspected file itself: qemu-img never probes', async (ctx) => {
    needQemu(ctx);
    const qcow2 = convertRaw(raw, dir.path('explicit.qcow2'), 'qcow2');
    const spy = await recorder('explicit');
    await convertImage({
      input: qcow2,
      from: 'qcow2',
      to: 'raw',
      output: dir.path('explicit.raw'),
      qemuImg: spy.script,
    });
    expect(await spy.args()).toEqual([
      'convert',
      '-f',
      'qcow2',
      '-O',
      'raw',
      '/dev/fd/3',
      expect.stringMatching(/\/\.explicit\.raw\.\w+\/explicit\.raw$/),
    ]);
    expect(sameContent(raw, dir.path('explicit.raw'))).toBe(true);

    // A Bochs disk header that visor has no reason to refuse (the format names no other file):
    // qemu-img probing it reads it as bochs, while converting it as raw copies its bytes as they are.
    const bochs = Buffer.alloc(4 * MiB);
    data.copy(bochs);
    bochs.fill(0, 0, 512 + 1024);
    bochs.write('Bochs Virtual HD Image', 0, 'latin1');
    bochs.write('Redolog', 32, 'latin1');
    bochs.write('Growing', 48, 'latin1');
    bochs.writeUInt32LE(0x00020000, 64); // version
    bochs.writeUInt32LE(512, 68); // header size
    bochs.writeUInt32LE(256, 72); // catalog entries
    bochs.writeUInt32LE(512, 76); // bitmap size
    bochs.writeUInt32LE(4096, 80); // extent size
    bochs.writeBigUInt64LE(BigInt(MiB), 88); // disk size
    bochs.fill(0xff, 512, 512 + 1024); // every catalog entry unallocated
    await writeFile(dir.path('bochs.raw'), bochs);
    expect(JSON.parse(qemuImg('info', '--output=json', dir.path('bochs.raw'))).format).toBe('bochs');
    const copy = await convertImage({
      input: dir.path('bochs.raw'),
      from: 'raw',
      to: 'raw',
      output: dir.path('bochs-copy.raw'),
    });
    expect(copy.input.format).toBe('raw');
    expect((await readFile(dir.path('bochs-copy.raw'))).equals(bochs)).toBe(true);
  });

  it('refuses an unsafe input before qemu-img runs, leaving no output', async (ctx) => {
    needQemu(ctx);
    const backing = dir.path('unsafe.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', backing, '1M');
    const spy = await recorder('unsafe');
    await expect(
      convertImage({ input: backing, from: 'qcow2', to: 'raw', output: dir.path('unsafe.raw'), qemuImg: spy.script }),
    ).rejects.toMatchObject({
      kind: 'unsafe',
      message: expect.stringContaining('backing file: "/etc/passwd"'),
    });
    // A qcow2 passed off as raw (the classic attack) is refused too.
    await expect(
      convertImage({
        input: convertRaw(raw, dir.path('unsafe2.qcow2'), 'qcow2'),
        from: 'raw',
        to: 'qcow2',
        output: dir.path('unsafe2.out'),
        qemuImg: spy.script,
      }),
    ).rejects.toMatchObject({
      kind: 'unsafe',
      message: expect.stringContaining('declared raw, but the content is qcow2'),
    });
    await expect(spy.args()).rejects.toThrow(/ENOENT/);
    expect(await leftovers('unsafe.raw')).toEqual([]);
    expect(await leftovers('unsafe2.out')).toEqual([]);
  });

  it('removes the partial output when aborted, and ends qemu-img', async (ctx) => {
    needQemu(ctx);
    // A stand-in that writes part of its output, then hangs: the abort must kill it and clean up.
    const hang = await recorder('hang', 'for last; do :; done\nprintf partial > "$last"\nexec sleep 60');
    const controller = new AbortController();
    const started = Date.now();
    const pending = convertImage({
      input: raw,
      from: 'raw',
      to: 'qcow2',
      output: dir.path('aborted.qcow2'),
      qemuImg: hang.script,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 300);
    await expect(pending).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringContaining('aborted') });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await leftovers('aborted.qcow2')).toEqual([]);

    // Aborted before it starts: qemu-img never runs.
    const early = new AbortController();
    early.abort();
    await expect(
      convertImage({ input: raw, from: 'raw', to: 'qcow2', output: dir.path('early.qcow2'), signal: early.signal }),
    ).rejects.toMatchObject({ kind: 'unavailable', message: 'conversion aborted' });
    expect(await leftovers('early.qcow2')).toEqual([]);
  });

  it('aborts a real qemu-img conversion in flight', async (ctx) => {
    needQemu(ctx);
    const big = dir.path('big.raw');
    await writeRawData(big, 96 * MiB);
    const controller = new AbortController();
    const pending = convertImage({
      input: big,
      from: 'raw',
      to: 'vmdk',
      outputOptions: { subformat: 'streamOptimized' },
      output: dir.path('inflight.vmdk'),
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 150);
    const outcome = await pending.then(
      () => 'finished',
      (error: { kind?: string }) => error.kind,
    );
    if (outcome === 'finished') {
      const why = 'qemu-img finished within 150 ms: the machine is too fast to catch it in flight';
      return skipAllowed(ctx, 'timing', `${why} (the stand-in test covers cleanup)`);
    }
    expect(outcome).toBe('unavailable');
    expect(await leftovers('inflight.vmdk')).toEqual([]);
  });

  it('maps a missing qemu-img to unsupported with the install hint', async () => {
    await expect(
      convertImage({
        input: raw,
        from: 'raw',
        to: 'qcow2',
        output: dir.path('missing.qcow2'),
        qemuImg: '/nonexistent/qemu-img',
      }),
    ).rejects.toMatchObject({
      kind: 'unsupported',
      message: expect.stringContaining('install the Debian package qemu-utils'),
    });
    expect(await leftovers('missing.qcow2')).toEqual([]);
  });

  it('reports a qemu-img failure clearly and leaves no output', async (ctx) => {
    needQemu(ctx);
    // Headers are sound, but the first L1 entry points at an unaligned L2 table: qemu-img fails mid-read.
    const broken = convertRaw(raw, dir.path('broken.qcow2'), 'qcow2');
    const header = await readFile(broken);
    const l1 = Number(header.readBigUInt64BE(40));
    await patchFile(broken, l1, Buffer.from([0x80, 0, 0, 0, 0, 0, 0x12, 0x34]));
    await expect(
      convertImage({ input: broken, from: 'qcow2', to: 'raw', output: dir.path('broken.raw') }),
    ).rejects.toMatchObject({
      kind: 'invalidInput',
      message: expect.stringMatching(/^qemu-img convert failed: .+/),
    });
    expect(await leftovers('broken.raw')).toEqual([]);
  });

  it(
    'refuses what it cannot do: unwritable formats, ' + 'OVAs, encrypted inputs, output options naming files',
    async (ctx) => {
      needQemu(ctx);
      await expect(
        convertImage({ input: raw, from: 'raw', to: 'iso', output: dir.path('x.iso') }),
      ).rejects.toMatchObject({ kind: 'unsupported', message: 'qemu-img cannot write disk format iso' });
      await expect(
        convertImage({
          input: raw,
          from: 'raw',
          to: 'qcow2',
          output: dir.path('x.qcow2'),
          outputOptions: { backing_file: '/etc/passwd' },
        }),
      ).rejects.toMatchObject({ kind: 'invalidInput' });
      await expect(
        convertImage({
          input: raw,
          from: 'raw',
          to: 'qcow2',
          output: dir.path('x.qcow2'),
          outputOptions: { compat: '1.1,data_file=/tmp/x' },
        }),
      ).rejects.toMatchObject({ kind: 'invalidInput' });
      await expect(convertImage({ input: raw, from: 'raw', to: 'raw', output: raw })).rejects.toMatchObject({
        kind: 'invalidInput',
        message: expect.stringContaining('the same file'),
      });
      await expect(
        convertImage({ input: raw, from: 'raw', to: 'qcow2', output: dir.path('no-such-folder/x.qcow2') }),
      ).rejects.toMatchObject({ kind: 'invalidInput', message: expect.stringContaining('no-such-folder') });
      const encrypted = dir.path('enc.qcow2');
      qemuImg(
        'create',
        '-q',
        '--object',
        'secret,id=sec0,data=visor',
        '-f',
        'qcow2',
        '-o',
        'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10',
        encrypted,
        '1M',
      );
      await expect(
        convertImage({ input: encrypted, from: 'qcow2', to: 'raw', output: dir.path('enc.raw') }),
      ).rejects.toMatchObject({ kind: 'unsupported', message: expect.stringContaining('encrypted') });
      await expect(
        convertImage({ input: dir.path('nothing.raw'), from: 'raw', to: 'qcow2', output: dir.path('nothing.qcow2') }),
      ).rejects.toMatchObject({ kind: 'notFound' });
      const vmdk = await readFile(convertRaw(raw, dir.path('x-disk.vmdk'), 'vmdk', 'subformat=streamOptimized'));
      await writeFile(
        dir.path('x-vm.ova'),
        await buildTar([
          { name: 'vm.ovf', data: ovfDescriptor([{ id: 'file1', href: 'disk1.vmdk' }]) },
          { name: 'disk1.vmdk', data: vmdk },
        ]),
      );
      await expect(
        convertImage({ input: dir.path('x-vm.ova'), from: 'vmdk', to: 'raw', output: dir.path('x-vm.raw') }),
      ).rejects.toMatchObject({ kind: 'unsafe', message: expect.stringContaining('the content is an OVA archive') });
      expect(await leftovers('x.')).toEqual([]);
      expect(await leftovers('x-vm.raw')).toEqual([]);
    },
  );
});
