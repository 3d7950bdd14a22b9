import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVisorError } from '../../../core/errors.js';
import { kindForCode, oneErrorCodes, OneClient } from '../../../adapters/opennebula/client.js';
import { parseReply } from '../../../adapters/opennebula/schema.js';
import { serializeTemplate } from '../../../adapters/opennebula/mapper-template.js';
import { parseTemplate } from '../../doubles/opennebula/template-parser.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../../doubles/opennebula/index.js';
import { expectValidDocuments } from './harness.js';

/** The wire protocol: both reply generations, error codes, faults, template text. */

let double: OpenNebulaDouble;
let client: OneClient;

beforeAll(async () => {
  double = await startOpenNebulaDouble({ generation: 7 });
  client = new OneClient({
    endpoint: double.endpoint,
    username: 'oneadmin',
    password: 'opennebula',
    timeoutMs: 5_000,
    maxResponseBytes: 1024 * 1024,
  });
});
afterAll(async () => {
  try {
    await expectValidDocuments([double]);
  } finally {
    client.close();
    await double.close();
  }
});

async function kindOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return isVisorError(error) ? error.kind : `not a VisorError: ${String(error)}`;
}

describe('OpenNebula client: replies', () => {
  it('reads both generations of reply arrays', () => {
    expect(parseReply([true, '<IMAGE_POOL></IMAGE_POOL>', 0], 'm')).toEqual({
      ok: true,
      result: '<IMAGE_POOL></IMAGE_POOL>',
    });
    expect(parseReply([true, 15, 0], 'm')).toEqual({ ok: true, result: 15 });
    // 5.x failure: three elements.
    expect(parseReply([false, '[ImageInfo] Error getting image [42].', 1024], 'm')).toEqual({
      ok: false,
      message: '[ImageInfo] Error getting image [42].',
      code: 1024,
    });
    // 6.x+ failure: object id and the <i8> replication index (a string: i8 exceeds JS integers).
    expect(parseReply([false, '[one.image.info] Error getting image [42].', 1024, 42, '0'], 'm')).toEqual({
      ok: false,
      message: '[one.image.info] Error getting image [42].',
      code: 1024,
    });
    for (const bad of [
      [],
      [true],
      [true, 1],
      ['true', 1, 0],
      [false, 1, 1024],
      [true, 1, 0x400],
      [false, 'x', 1024, 'id', 0],
      {},
    ]) {
      expect(() => parseReply(bad, 'm'), JSON.stringify(bad)).toThrow(/malformed/);
    }
  });

  it('maps every oned error code to a kind', () => {
    expect(Object.entries(oneErrorCodes).map(([name, code]) => [name, kindForCode(code)])).toEqual([
      ['AUTHENTICATION', 'auth'],
      ['AUTHORIZATION', 'forbidden'],
      ['NO_EXISTS', 'notFound'],
      ['ACTION', 'conflict'],
      ['XML_RPC_API', 'invalidInput'],
      ['INTERNAL', 'unavailable'],
      ['ALLOCATE', 'conflict'],
      ['LOCKED', 'conflict'],
      ['REPLICATION', 'unavailable'],
    ]);
    expect(kindForCode(7)).toBe('invalidResponse');
  });

  it('maps oned replies and xmlrpc-c faults from the double', async () => {
    expect(await client.imagePool('all')).toEqual([]);
    expect(await kindOf(client.image(42))).toBe('notFound');
    expect(await kindOf(client.call('one.image.frobnicate', [1]))).toBe('unsupported');
    expect(await kindOf(client.call('one.image.info', ['not-an-id']))).toBe('invalidInput');
    expect(await kindOf(client.chmodImage(1, [1, 2, 3]))).toBe('internal');
    const wrong = new OneClient({
      endpoint: double.endpoint,
      username: 'oneadmin',
      password: 'nope',
      timeoutMs: 5_000,
      maxResponseBytes: 1024,
    });
    try {
      expect(await kindOf(wrong.datastorePool())).toBe('auth');
    } finally {
      wrong.close();
    }
    // A reply above the size limit is refused, not truncated.
    const tiny = new OneClient({
      endpoint: double.endpoint,
      username: 'oneadmin',
      password: 'opennebula',
      timeoutMs: 5_000,
      maxResponseBytes: 200,
    });
    try {
      expect(await kindOf(tiny.datastorePool())).toBe('invalidResponse');
    } finally {
      tiny.close();
    }
  });
});

describe('OpenNebula template text', () => {
  it('writes values oned reads back exactly, quotes and newlines included', () => {
    const attributes = {
      NAME: 'x',
      DESCRIPTION: 'say "hi"\nand \\"bye\\" <&>',
      EMPTY: '',
      PATH: 'http://agent:8080/content/abc?token="1"',
    };
    const text = serializeTemplate(attributes, 'test');
    expect(Object.fromEntries(parseTemplate(text))).toEqual(attributes);
  });

  it("refuses what oned's template grammar cannot carry", () => {
    expect(() => serializeTemplate({ A: 'x ]]> y' }, 'test')).toThrow(/A: contains '\]\]>'/);
    expect(() => serializeTemplate({ A: 'ends with \\' }, 'test')).toThrow(/backslash/);
    expect(() => serializeTemplate({ 'lower-case': 'x' }, 'test')).toThrow(/attribute name/);
    // The double's grammar agrees with oned's: "]]>" aborts the parse; a trailing backslash escapes
    // the closing quote, the string runs on into the next attribute, and the rest is a syntax error.
    expect(() => parseTemplate('A = "x ]]> y"')).toThrow(/CCDATA/);
    expect(() => parseTemplate('A = "x\\"\nB = "y"')).toThrow(/syntax error/);
  });
});
