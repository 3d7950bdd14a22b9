import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Deserializer } from '@foxglove/xmlrpc';
import { afterAll, describe, expect, it } from 'vitest';
import {
  startOpenNebulaDouble,
  type OpenNebulaDouble,
  type OpenNebulaDoubleOptions,
  type ReplyGeneration,
} from '../../doubles/opennebula/index.js';
import { validateOneDocuments } from '../../doubles/opennebula/xsd.js';
import { expectValidDocuments } from './harness.js';
import { as5x, as7x, imageSeedsFrom, recorded, recordedDatastores, recordedPayload } from './recorded.js';

/**
 * The double against the recorded traffic of a real oned (test/fixtures/opennebula/xmlrpc):
 * each recorded request is sent to a double holding the state the recording implies, and its
 * reply must be the recorded reply byte for byte — or, where the reply carries an IMAGE
 * document, the recorded document once the documented 5.x -> 7.x differences are undone.
 * Every document the doubles send validates against the official XSDs (afterAll).
 */

const doubles: OpenNebulaDouble[] = [];
const folders: string[] = [];

afterAll(async () => {
  try {
    await expectValidDocuments(doubles);
  } finally {
    for (const d of doubles) await d.close();
    for (const f of folders) await rm(f, { recursive: true, force: true });
  }
});

async function world(
  options: OpenNebulaDoubleOptions,
  seed: (d: OpenNebulaDouble) => void = () => undefined,
): Promise<OpenNebulaDouble> {
  const double = await startOpenNebulaDouble({ datastores: recordedDatastores, ...options });
  doubles.push(double);
  seed(double);
  return double;
}

async function post(double: OpenNebulaDouble, body: string): Promise<string> {
  const response = await fetch(double.endpoint, { method: 'POST', headers: { 'Content-Type': 'text/xml' }, body });
  expect(response.status).toBe(200);
  return response.text();
}

const seedImages = (payload: string) => (d: OpenNebulaDouble) => {
  for (const seed of imageSeedsFrom(payload)) d.addImage(seed);
};

/** Replies that carry no document, replayed against a 5.x double: identical bytes. */
const byteIdentical: { label: string; seed?: (d: OpenNebulaDouble) => void; options?: OpenNebulaDoubleOptions }[] = [
  { label: 'one.imagepool.info.error-256-authentication' },
  { label: 'one.image.info.error-1024-no-exists' },
  {
    label: 'one.image.info.error-512-authorization',
    seed: (d) => void d.addImage({ id: 5, name: 'ttylinux05', uid: 0 }),
  },
  {
    label: 'one.image.delete.error-2048-action',
    seed: (d) => {
      d.addImage({ id: 0, name: 'used-by-a-vm', uid: 2 });
      d.attachVm(0, 7);
    },
  },
  { label: 'one.image.delete.ok', seed: (d) => void d.addImage({ id: 4, name: 'ttylinux04', uid: 0 }) },
  { label: 'one.image.enable.ok-disable', seed: (d) => void d.addImage({ id: 5, name: 'ttylinux05', uid: 0 }) },
  { label: 'one.image.rename.ok', seed: (d) => void d.addImage({ id: 3, name: 'ttylinux03', uid: 0 }) },
  { label: 'one.image.update.ok', seed: (d) => void d.addImage({ id: 3, name: 'ttylinux03', uid: 0 }) },
  { label: 'one.imagepool.info.ok-empty' },
  {
    label: 'one.datastorepool.info.ok',
    seed: seedImages(
      recordedPayload('one.imagepool.info.ok-6-images', 'IMAGE_POOL').replace(/<IMAGE><ID>11<\/ID>.*?<\/IMAGE>/, ''),
    ),
  },
];

describe('OpenNebula double: replays the recorded traffic', () => {
  for (const c of byteIdentical) {
    it(`answers ${c.label} byte for byte as the recorded oned did`, async () => {
      const double = await world({ generation: 5, ...c.options }, c.seed);
      expect(await post(double, recorded(c.label, 'request'))).toBe(recorded(c.label, 'response'));
    });
  }

  it('answers one.image.chown in the recorded shape of an id reply (as rename.ok), and moves the image', async () => {
    // No chown was recorded: its reply is the same [success, id, code] triple as rename's, byte for byte.
    const double = await world(
      { generation: 5, groups: [{ id: 100, name: 'vo-alpha' }] },
      (d) => void d.addImage({ id: 3, name: 'ttylinux03', uid: 0 }),
    );
    const rename = recorded('one.image.rename.ok', 'request');
    const chown = rename
      .replace('one.image.rename', 'one.image.chown')
      .replace(
        '<string>EXPIRED_1487803799_ttylinux03</string>',
        '<i4>-1</i4></value></param><param><value><i4>100</i4>',
      );
    expect(await post(double, chown)).toBe(recorded('one.image.rename.ok', 'response'));
    expect(double.images().find((i) => i.id === 3)).toMatchObject({ gid: 100, gname: 'vo-alpha' });
    const unknown = chown.replace('<i4>100</i4>', '<i4>555</i4>');
    const reply = await new Deserializer().deserializeMethodResponse(await post(double, unknown));
    const [ok, message, code] = reply as [boolean, string, number];
    expect([ok, code]).toEqual([false, 0x400]);
    expect(message).toMatch(/Error getting group \[555\]/);
  });

  it('answers one.image.allocate as recorded, and holds the image the recorded oned held', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'visor-one-recorded-'));
    folders.push(folder);
    const file = join(folder, 'file.img');
    await writeFile(file, Buffer.alloc(1000, 1));
    const double = await world({
      generation: 5,
      nextImageId: 15,
      resolveLocalPath: (p) => (p === '/var/tmp/file.img' ? file : p),
      now: () => new Date(1487805308_000),
    });
    double.holdImports(true);
    const label = 'one.image.allocate.ok';
    expect(await post(double, recorded(label, 'request'))).toBe(recorded(label, 'response'));
    // The recorded LOCKED image (id 14 of an earlier run of the same spec) is what allocate leaves behind.
    const info = await post(double, recorded('one.image.info.ok-state1-ready', 'request'));
    const payload = (await new Deserializer().deserializeMethodResponse(info)) as [boolean, string, number];
    expect(as5x(payload[1])).toBe(
      recordedPayload('one.image.info.ok-state4-locked', 'IMAGE').replace('<ID>14</ID>', '<ID>15</ID>'),
    );
  });

  const documents: { label: string; root: 'IMAGE' | 'IMAGE_POOL' }[] = [
    { label: 'one.image.info.ok-state1-ready', root: 'IMAGE' },
    { label: 'one.image.info.ok-state2-used', root: 'IMAGE' },
    { label: 'one.image.info.ok-state3-disabled', root: 'IMAGE' },
    { label: 'one.image.info.ok-state4-locked', root: 'IMAGE' },
    { label: 'one.image.info.ok-state5-error', root: 'IMAGE' },
    { label: 'one.imagepool.info.ok-6-images', root: 'IMAGE_POOL' },
  ];
  for (const c of documents) {
    it(`answers ${c.label} with the recorded envelope and the recorded document in its 7.x shape`, async () => {
      const payload = recordedPayload(c.label, c.root);
      const double = await world({ generation: 5 }, seedImages(payload));
      double.holdImports(true);
      const reply = await post(double, recorded(c.label, 'request'));
      const stripString = (body: string) => body.replace(/<string>[\s\S]*<\/string>/, '<string/>');
      expect(stripString(reply)).toBe(stripString(recorded(c.label, 'response')));
      const [ok, document, code] = (await new Deserializer().deserializeMethodResponse(reply)) as [
        boolean,
        string,
        number,
      ];
      expect([ok, code]).toEqual([true, 0]);
      expect(document).toMatch(/<MODTIME>\d+<\/MODTIME>/);
      expect(as5x(document)).toBe(payload);
    });
  }
});

describe('OpenNebula double: reply generations', () => {
  const errors: { label: string; seed?: (d: OpenNebulaDouble) => void; method: string; objectId: number }[] = [
    { label: 'one.image.info.error-1024-no-exists', method: 'one.image.info', objectId: 42 },
    { label: 'one.imagepool.info.error-256-authentication', method: 'one.imagepool.info', objectId: -1 },
    {
      label: 'one.image.info.error-512-authorization',
      seed: (d) => void d.addImage({ id: 5, name: 'ttylinux05', uid: 0 }),
      method: 'one.image.info',
      objectId: 5,
    },
  ];
  for (const generation of [5, 7] as ReplyGeneration[]) {
    for (const e of errors) {
      it(
        `fails ${e.label} with a ${generation === 5 ? '3' : '5'}-element ` + `array in generation ${generation}`,
        async () => {
          const double = await world({ generation }, e.seed);
          const reply = (await new Deserializer().deserializeMethodResponse(
            await post(double, recorded(e.label, 'request')),
          )) as unknown[];
          const recordedReply = (await new Deserializer().deserializeMethodResponse(recorded(e.label, 'response'))) as [
            boolean,
            string,
            number,
          ];
          const message = recordedReply[1].replace(/^\[[A-Za-z]+\] /, '');
          if (generation === 5) expect(reply).toEqual(recordedReply);
          // Current oned: "[one.image.info] ..." and the object id plus an <i8> replication index (RequestXRPC.cc).
          else expect(reply).toEqual([false, `[${e.method}] ${message}`, recordedReply[2], e.objectId, '0']);
        },
      );
    }
  }

  it('succeeds with the same 3-element array in both generations', async () => {
    for (const generation of [5, 7] as ReplyGeneration[]) {
      const double = await world({ generation }, (d) => void d.addImage({ id: 4, name: 'ttylinux04', uid: 0 }));
      expect(await post(double, recorded('one.image.delete.ok', 'request'))).toBe(
        recorded('one.image.delete.ok', 'response'),
      );
    }
  });
});

describe('OpenNebula double: the XSD check', () => {
  it('is not vacuous: the recorded 5.x documents fail it exactly on the documented version differences', async () => {
    const report = await validateOneDocuments([recordedPayload('one.image.info.ok-state1-ready', 'IMAGE')]);
    expect(report.valid).toBe(false);
    // libxml2 stops at the first difference: 5.x has no MODTIME (added in 7.0) before SOURCE.
    expect(report.errors.join('\n')).toMatch(
      new RegExp(
        String.raw`Element '\{http:\/\/opennebula.org\/XMLSchema\}SOURCE': This element is not ` +
          String.raw`expected. Expected is \( \{http:\/\/opennebula.org\/XMLSchema\}MODTIME \)`,
      ),
    );
    // With the documented 6.x/7.x additions put in, every recorded document validates.
    const upgraded = await validateOneDocuments(
      ['ok-state1-ready', 'ok-state2-used', 'ok-state3-disabled', 'ok-state4-locked', 'ok-state5-error'].map((s) =>
        as7x(recordedPayload(`one.image.info.${s}`, 'IMAGE')),
      ),
    );
    expect(upgraded).toMatchObject({ valid: true, checked: 5 });
    expect(
      (await validateOneDocuments([as7x(recordedPayload('one.imagepool.info.ok-6-images', 'IMAGE_POOL'))])).errors,
    ).toEqual([]);
    const datastores = await validateOneDocuments([recordedPayload('one.datastorepool.info.ok', 'DATASTORE_POOL')]);
    expect(datastores.errors).toEqual([]);
    const broken = await validateOneDocuments(['<IMAGE_POOL><IMAGE><ID>x</ID></IMAGE></IMAGE_POOL>']);
    expect(broken.valid).toBe(false);
  });
});
