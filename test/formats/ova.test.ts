import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import {
  bufferReader,
  inspectImage,
  listTarMembers,
  openFileReader,
  tarMemberReader,
  type InspectOptions,
} from '../../core/formats/index.js';
import { buildTar, convertRaw, createImage, ovfDescriptor, scratch, writeRawData, type TarEntry } from './images.js';
import { requirePeer } from '../peers/index.js';
import { qemuImg } from './qemu.js';

describe('formats: OVA archives', () => {
  let skipReason: string | undefined;
  let dir: Awaited<ReturnType<typeof scratch>>;
  let vmdk = Buffer.alloc(0);
  let qcow2WithBacking = Buffer.alloc(0);
  let qcow2 = Buffer.alloc(0);

  beforeAll(async () => {
    skipReason = (await requirePeer('qemu-img')).skip;
    dir = await scratch('ova');
    if (skipReason) return;
    const raw = dir.path('data.raw');
    await writeRawData(raw, 4 * 1024 * 1024);
    vmdk = await readFile(convertRaw(raw, dir.path('disk1.vmdk'), 'vmdk', 'subformat=streamOptimized'));
    qcow2 = await readFile(createImage(dir.path('plain.qcow2'), 'qcow2', '4M'));
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', dir.path('backing.qcow2'), '1M');
    qcow2WithBacking = await readFile(dir.path('backing.qcow2'));
  }, 600_000);
  afterAll(() => dir?.cleanup());

  const needQemu = (ctx: TestContext) => {
    if (skipReason) ctx.skip(skipReason);
  };
  const descriptor = (href = 'disk1.vmdk', extra: Parameters<typeof ovfDescriptor>[0] = []) =>
    ovfDescriptor([{ id: 'file1', href }, ...extra]);
  const ova = (entries: TarEntry[]) => buildTar(entries);
  const refused = async (archive: Buffer, options: InspectOptions = { container: 'ova' }) => {
    const error = await inspectImage(bufferReader(archive), options).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!error) throw new Error('the archive was accepted');
    return error as { kind: string; message: string };
  };

  it('inspects a good OVA and every disk in it, reading headers only', async (ctx) => {
    needQemu(ctx);
    const archive = await ova([
      { name: 'vm.ovf', data: descriptor() },
      { name: 'disk1.vmdk', data: vmdk },
      { name: 'vm.mf', data: Buffer.from('SHA256(disk1.vmdk)= 00\n') },
    ]);
    for (const options of [{ container: 'ova', declared: 'vmdk' }, {}] as InspectOptions[]) {
      const report = await inspectImage(bufferReader(archive), options);
      expect(report).toMatchObject({
        format: 'vmdk',
        containerFormat: 'ova',
        subformat: 'streamOptimized',
        virtualSize: 4 * 1024 * 1024,
        details: { descriptor: 'vm.ovf', members: 3 },
      });
      expect(report.members?.map((m) => [m.name, m.disk, m.report.format])).toEqual([['disk1.vmdk', true, 'vmdk']]);
      expect(report.bytesRead).toBeLessThan(64 * 1024);
    }
  });

  it('reads tar members as images of their own (tarMemberReader), ustar, pax and GNU long names alike', async (ctx) => {
    needQemu(ctx);
    const longName = `${'d'.repeat(60)}/${'n'.repeat(120)}.vmdk`;
    const archive = await ova([
      { name: 'vm.ovf', data: descriptor(longName) },
      { name: longName, data: vmdk },
    ]);
    const reader = bufferReader(archive);
    const { members, problems } = await listTarMembers(reader);
    expect(problems).toEqual([]);
    const disk = members.find((m) => m.name === longName)!;
    expect((await inspectImage(tarMemberReader(reader, disk), { declared: 'vmdk' })).virtualSize).toBe(4 * 1024 * 1024);
    expect((await inspectImage(reader, { container: 'ova' })).members?.[0]?.name).toBe(longName);

    // The same archive written by GNU tar in its own format (long names as 'L' entries).
    await writeFile(
      dir.path('vm.ovf'),
      descriptor('disk-with-a-rather-long-name-that-does-not-fit-in-one-hundred-bytes-of-a-classic-tar-header.vmdk'),
    );
    await writeFile(
      dir.path('disk-with-a-rather-long-name-that-does-not-fit-in-one-hundred-bytes-of-a-classic-tar-header.vmdk'),
      vmdk,
    );
    execFileSync('tar', [
      '--format=gnu',
      '-cf',
      dir.path('gnu.ova'),
      '-C',
      dir.dir,
      'vm.ovf',
      'disk-with-a-rather-long-name-that-does-not-fit-in-one-hundred-bytes-of-a-classic-tar-header.vmdk',
    ]);
    const gnu = await openFileReader(dir.path('gnu.ova'));
    const report = await inspectImage(gnu, { container: 'ova', declared: 'vmdk' }).finally(() => gnu.close());
    expect(report).toMatchObject({ containerFormat: 'ova', format: 'vmdk' });
  });

  it('refuses member names that leave the archive: "../", absolute paths', async (ctx) => {
    needQemu(ctx);
    const dotdot = await ova([
      { name: 'vm.ovf', data: descriptor() },
      { name: 'disk1.vmdk', data: vmdk },
      { name: '../../etc/cron.d/evil', data: Buffer.from('* * * * * root true\n') },
    ]);
    expect(await refused(dotdot)).toMatchObject({
      kind: 'unsafe',
      message: expect.stringContaining('archive member "../../etc/cron.d/evil" climbs out of the archive with ".."'),
    });
    const absolute = await ova([
      { name: 'vm.ovf', data: descriptor() },
      { name: '/etc/disk1.vmdk', data: vmdk },
    ]);
    expect((await refused(absolute)).message).toContain('archive member "/etc/disk1.vmdk" has an absolute path');
  });

  it('refuses links and duplicate members', async (ctx) => {
    needQemu(ctx);
    const link = await ova([
      { name: 'vm.ovf', data: descriptor() },
      { name: 'disk1.vmdk', type: 'symlink', linkname: '/etc/passwd' },
    ]);
    expect((await refused(link)).message).toContain('archive member "disk1.vmdk" is a symbolic link');
    const twice = await ova([
      { name: 'vm.ovf', data: descriptor() },
      { name: 'disk1.vmdk', data: vmdk },
      { name: './disk1.vmdk', data: qcow2 },
    ]);
    expect((await refused(twice)).message).toContain('archive member "disk1.vmdk" appears twice');
  });

  it('requires exactly one OVF descriptor', async (ctx) => {
    needQemu(ctx);
    const two = await ova([
      { name: 'a.ovf', data: descriptor() },
      { name: 'b.ovf', data: descriptor() },
      { name: 'disk1.vmdk', data: vmdk },
    ]);
    expect(await refused(two)).toMatchObject({
      kind: 'unsafe',
      message: expect.stringContaining('OVA holds 2 OVF descriptors (a.ovf, b.ovf)'),
    });
    const none = await ova([{ name: 'disk1.vmdk', data: vmdk }]);
    expect(await refused(none)).toMatchObject({
      kind: 'invalidInput',
      message: expect.stringContaining('holds no OVF descriptor'),
    });
  });

  it('refuses an OVF whose files are not members: missing, remote, outside the archive', async (ctx) => {
    needQemu(ctx);
    for (const [href, reason] of [
      ['disk2.vmdk', 'names a file the archive does not contain'],
      ['http://198.51.100.7/disk.vmdk', 'points outside the archive'],
      ['file:///etc/passwd', 'points outside the archive'],
      ['../disk1.vmdk', 'climbs out of the archive'],
      ['/etc/passwd', 'has an absolute path'],
    ]) {
      const archive = await ova([
        { name: 'vm.ovf', data: descriptor(href) },
        { name: 'disk1.vmdk', data: vmdk },
      ]);
      expect(await refused(archive)).toMatchObject({
        kind: 'unsafe',
        message: expect.stringContaining(`OVF file "file1" (href ${JSON.stringify(href)}) ${reason}`),
      });
    }
  });

  it(
    'inspects each disk recursively: ' + 'a qcow2 with a backing file inside is refused, naming the member',
    async (ctx) => {
      needQemu(ctx);
      const archive = await ova([
        {
          name: 'vm.ovf',
          data: ovfDescriptor([
            { id: 'file1', href: 'disk1.qcow2', format: 'http://www.gnome.org/~markmc/qcow-image-format.html' },
          ]),
        },
        { name: 'disk1.qcow2', data: qcow2WithBacking },
      ]);
      expect(await refused(archive)).toMatchObject({
        kind: 'unsafe',
        message: 'OVA member "disk1.qcow2": unsafe image: qcow2 image has a backing file: "/etc/passwd"',
      });
    },
  );

  it("checks each disk against its declared format (the OVF format URI, the image's disk format)", async (ctx) => {
    needQemu(ctx);
    const lying = await ova([
      { name: 'vm.ovf', data: descriptor('disk1.vmdk') },
      { name: 'disk1.vmdk', data: qcow2 },
    ]);
    expect((await refused(lying)).message).toContain(
      'OVA member "disk1.vmdk": unsafe image: declared vmdk, but the content is qcow2',
    );
    const good = await ova([
      { name: 'vm.ovf', data: descriptor() },
      { name: 'disk1.vmdk', data: vmdk },
    ]);
    expect((await refused(good, { container: 'ova', declared: 'qcow2' })).message).toContain(
      'the OVF descriptor says disk "disk1.vmdk" is vmdk, the image declares qcow2',
    );
  });

  it('refuses container mismatches and nested OVAs', async (ctx) => {
    needQemu(ctx);
    const good = await ova([
      { name: 'vm.ovf', data: descriptor() },
      { name: 'disk1.vmdk', data: vmdk },
    ]);
    expect((await refused(good, { container: 'bare' })).message).toContain(
      'declared container format bare, but the content is an OVA archive',
    );
    expect((await refused(good, { declared: 'vmdk' })).message).toContain(
      'declared disk format vmdk, but the content is an OVA archive (declare container format ova)',
    );
    expect((await refused(qcow2, { container: 'ova' })).message).toContain(
      'declared container format ova, but the content is qcow2, not an OVA archive',
    );
    const nested = await ova([
      { name: 'outer.ovf', data: ovfDescriptor([{ id: 'file1', href: 'inner.ova', format: 'urn:unknown' }]) },
      { name: 'inner.ova', data: good },
    ]);
    expect((await refused(nested)).message).toContain(
      'OVA member "inner.ova": unsafe image: an OVA nested inside an OVA is not accepted',
    );
  });

  it('refuses malformed archives and descriptors as invalid input, and DTDs as unsafe', async (ctx) => {
    needQemu(ctx);
    const good = await ova([
      { name: 'vm.ovf', data: descriptor() },
      { name: 'disk1.vmdk', data: vmdk },
    ]);
    expect(await refused(good.subarray(0, 4096))).toMatchObject({
      kind: 'invalidInput',
      message: expect.stringContaining('invalid tar archive: truncated archive'),
    });
    const broken = await ova([
      { name: 'vm.ovf', data: Buffer.from('<Envelope><References><File') },
      { name: 'disk1.vmdk', data: vmdk },
    ]);
    expect(await refused(broken)).toMatchObject({
      kind: 'invalidInput',
      message: expect.stringContaining('OVF descriptor is not well-formed XML'),
    });
    const dtd = await ova([
      { name: 'vm.ovf', data: Buffer.from('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Envelope/>') },
      { name: 'disk1.vmdk', data: vmdk },
    ]);
    expect(await refused(dtd)).toMatchObject({
      kind: 'unsafe',
      message: expect.stringContaining('OVF descriptor declares a DTD'),
    });
  });
});
