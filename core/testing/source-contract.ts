import { createHash } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { isVisorError, type ErrorKind } from '../errors.js';
import { architectures, checksumAlgorithms, containerFormats, diskFormats } from '../image/model.js';
import { propertyKeyPattern } from '../image/schema.js';
import {
  isUnchanged,
  refusalOf,
  type Source,
  type SourceEntry,
  type SourceRefusal,
  type SourceSnapshot,
} from '../source/port.js';
import { skipAllowed, skipSuite, type SuiteSkip } from './skips.js';

/** A source built over a list the harness controls, and the bytes behind each of its entries. */
export interface SourceHarness {
  /** A source over a valid list with at least one entry. */
  source(): Promise<Source>;
  /** The bytes each entry of that list must yield, by entry key. */
  expectedBytes(): Promise<ReadonlyMap<string, Buffer>>;
  /**
   * Sources that must refuse their list, with the refusal expected: tampered, unsigned, expired,
   * signed by an untrusted party... Each is listed once and must throw that reason.
   */
  refused?(): Promise<{ title: string; source: Source; reason: SourceRefusal }[]>;
  /** A source whose list server cannot be reached (a closed port). */
  unreachable?(): Promise<Source>;
  cleanup?(): Promise<void>;
}

const hexLength: Record<string, number> = { md5: 32, sha256: 64, sha512: 128 };

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

function expectKind(error: unknown, kind: ErrorKind): void {
  expect(error, `expected a ${kind} error`).toBeDefined();
  expect(isVisorError(error) ? error.kind : String(error)).toBe(kind);
}

/** The source contract: one suite for every image source (HEPiX lists, simplestreams, OCI, ...). */
export function sourceContract(name: string, makeHarness: () => Promise<SourceHarness>, skip?: SuiteSkip): void {
  describe(`source contract: ${name}`, () => {
    let harness: SourceHarness;
    let source: Source;
    let snapshot: SourceSnapshot;

    beforeAll(async () => {
      if (skip) return;
      harness = await makeHarness();
      source = await harness.source();
      const listing = await source.list();
      if (isUnchanged(listing)) throw new Error('a first list() without `previous` must return a snapshot');
      snapshot = listing;
    }, 60_000);
    afterAll(async () => {
      if (skip || !source) return;
      await source.close();
      await harness.cleanup?.();
    });

    const test = (title: string, fn: (ctx: TestContext) => Promise<void>, timeout = 60_000) =>
      it(
        title,
        async (ctx) => {
          if (skip) skipSuite(ctx, skip);
          await fn(ctx);
        },
        timeout,
      );

    test('lists entries with unique keys, versions, names, locations and well-formed digests', async () => {
      expect(snapshot.entries.length).toBeGreaterThan(0);
      expect(typeof snapshot.revision).toBe('string');
      expect(snapshot.revision.length).toBeGreaterThan(0);
      const keys = new Set<string>();
      for (const entry of snapshot.entries) {
        expect(keys.has(entry.key), `duplicate key ${entry.key}`).toBe(false);
        keys.add(entry.key);
        expect(entry.key.length).toBeGreaterThan(0);
        expect(entry.version.length).toBeGreaterThan(0);
        expect(entry.name.length).toBeGreaterThan(0);
        expect(entry.location.url).toMatch(/^[a-z][a-z0-9+.-]*:/);
        const algorithms = Object.keys(entry.checksums);
        expect(algorithms.length, `${entry.key} states no digest`).toBeGreaterThan(0);
        for (const [algorithm, value] of Object.entries(entry.checksums)) {
          expect(checksumAlgorithms as readonly string[]).toContain(algorithm);
          expect(value).toMatch(new RegExp(`^[0-9a-f]{${hexLength[algorithm]}}$`));
        }
        if (entry.size !== undefined) expect(Number.isSafeInteger(entry.size) && entry.size >= 0).toBe(true);
        if (entry.diskFormat) expect(diskFormats as readonly string[]).toContain(entry.diskFormat);
        if (entry.containerFormat) expect(containerFormats as readonly string[]).toContain(entry.containerFormat);
        if (entry.architecture) expect(architectures as readonly string[]).toContain(entry.architecture);
        if (entry.expiresAt) expect(Number.isNaN(Date.parse(entry.expiresAt))).toBe(false);
        for (const [key, value] of Object.entries(entry.properties)) {
          expect(key).toMatch(propertyKeyPattern);
          expect(key.startsWith('source:'), `${key}: source:* keys are the importer's`).toBe(false);
          expect(typeof value).toBe('string');
        }
      }
      if (snapshot.expiresAt) expect(Date.parse(snapshot.expiresAt)).toBeGreaterThan(Date.now());
    });

    test('lists the same entries twice for an unchanged list, or says it is unchanged', async () => {
      const again = await source.list();
      if (isUnchanged(again)) throw new Error('list() without `previous` must return a snapshot');
      const ids = (s: SourceSnapshot) => s.entries.map((e) => `${e.key}@${e.version}`).sort();
      expect(ids(again)).toEqual(ids(snapshot));
      expect(again.revision).toBe(snapshot.revision);
      if (snapshot.cursor !== undefined) {
        const next = await source.list({ previous: snapshot.cursor });
        if (isUnchanged(next)) expect(next.cursor).toBe(snapshot.cursor);
        else expect(ids(next)).toEqual(ids(snapshot));
      }
    });

    test('opens every entry: the bytes match its size and every digest it states', async () => {
      const expected = await harness.expectedBytes();
      for (const entry of snapshot.entries) {
        const want = expected.get(entry.key);
        expect(want, `the harness has no bytes for ${entry.key}`).toBeDefined();
        const download = await source.open(entry);
        expect(download.offset).toBe(0);
        const got = await buffer(download.stream);
        expect(got.equals(want!)).toBe(true);
        if (entry.size !== undefined) expect(got.length).toBe(entry.size);
        if (download.size !== undefined) expect(download.size).toBe(got.length);
        for (const [algorithm, value] of Object.entries(entry.checksums)) {
          expect(createHash(algorithm).update(got).digest('hex'), `${entry.key} ${algorithm}`).toBe(value);
        }
      }
    }, 120_000);

    test('resumes a download at an offset, or says it restarted at 0', async (ctx) => {
      const expected = await harness.expectedBytes();
      const entry = snapshot.entries.find((e) => (expected.get(e.key)?.length ?? 0) > 2)!;
      expect(entry).toBeDefined();
      const data = expected.get(entry.key)!;
      const offset = Math.floor(data.length / 2);
      const download = await source.open(entry, { offset });
      const got = await buffer(download.stream);
      if (!source.capabilities.resume) {
        expect(download.offset).toBe(0);
        expect(got.equals(data)).toBe(true);
        skipAllowed(ctx, 'capability', `${name} cannot resume; it restarted at 0 as it must`);
      }
      expect(download.offset).toBe(offset);
      expect(got.equals(data.subarray(offset))).toBe(true);
    });

    test('refuses to open an entry it does not offer (notFound)', async () => {
      const entry = snapshot.entries[0]!;
      const ghost: SourceEntry = {
        ...entry,
        key: `${entry.key}-ghost-${Date.now()}`,
        version: `${entry.version}-ghost`,
        location: { ...entry.location, url: `${entry.location.url}-ghost-${Date.now()}` },
      };
      expectKind(await failure(source.open(ghost).then((d) => d.stream.destroy())), 'notFound');
    });

    test('honours an aborted signal', async () => {
      const controller = new AbortController();
      controller.abort();
      expect(await failure(source.list({ signal: controller.signal }))).toBeDefined();
      expect(await failure(source.open(snapshot.entries[0]!, { signal: controller.signal }))).toBeDefined();
    });

    test('refuses bad lists with the reason, a typed error and no entries', async (ctx) => {
      const cases = (await harness.refused?.()) ?? [];
      if (cases.length === 0) skipAllowed(ctx, 'capability', `${name} has no refusal cases (unsigned format)`);
      for (const { title, source: bad, reason } of cases) {
        const error = await failure(bad.list());
        await bad.close();
        expect(error, `${title}: should be refused`).toBeDefined();
        expect(refusalOf(error), `${title}: ${String(error)}`).toBe(reason);
        expect(isVisorError(error) && error.message.length > 0).toBe(true);
      }
    }, 120_000);

    test('reports an unreachable list as unavailable (worth retrying)', async (ctx) => {
      if (!harness.unreachable) skipAllowed(ctx, 'capability', `${name} has no network list`);
      const bad = await harness.unreachable!();
      const error = await failure(bad.list());
      await bad.close();
      expect(refusalOf(error)).toBe('unreachable');
      expectKind(error, 'unavailable');
    });

    test('closes twice without error', async () => {
      const extra = await harness.source();
      await extra.close();
      await extra.close();
    });
  });
}
