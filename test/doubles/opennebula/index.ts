import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm, stat, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Deserializer, type XmlRpcValue } from '@foxglove/xmlrpc';
import {
  datastorePoolXml,
  imagePoolXml,
  imageXml,
  logTime,
  type DoubleDatastore,
  type DoubleImage,
} from './documents.js';
import { faultResponse, methodResponse, type XmlRpcOut } from './envelope.js';
import { parseTemplate, TemplateSyntaxError } from './template-parser.js';

export type { DoubleDatastore, DoubleImage } from './documents.js';

/**
 * A protocol-faithful OpenNebula front-end (oned's XML-RPC API) for tests, where no real oned
 * can run. What it answers is what oned answers: the reply arrays of either generation (5.x:
 * [ok, result|message, code]; 6.x+: failures carry [.., object id, <i8> replication index]),
 * oned's error codes and messages, IMAGE / IMAGE_POOL / DATASTORE_POOL documents shaped by the
 * official XSDs, and oned's image life cycle: allocate stats PATH (size and capacity checked
 * synchronously), the image sits LOCKED while the "datastore driver" really fetches the URL or
 * copies the local file (checking MD5 when the template gives one), then READY or ERROR with
 * TEMPLATE/ERROR; USED while VMs hold it; DELETE until the file is gone. Every response body
 * is recorded so that tests can validate them all against the XSDs.
 */

export type ReplyGeneration = 5 | 7;

export interface DoubleUser {
  id: number;
  name: string;
  password: string;
  gid: number;
  gname: string;
}

export type DoubleImageSeed = Partial<Omit<DoubleImage, 'template'>> & {
  name: string;
  template?: Record<string, string> | Map<string, string>;
};
export type DoubleDatastoreSeed = Partial<Omit<DoubleDatastore, 'template'>> & {
  id: number;
  name: string;
  type: number;
  template?: Record<string, string>;
};

export interface OpenNebulaDoubleOptions {
  /** 7 (default): current oned; 5: the recorded 5.x replies (3-element failures, [ImageInfo]-style prefixes). */
  generation?: ReplyGeneration;
  users?: DoubleUser[];
  /** Groups besides the users' own primary groups (what one.image.chown may move an image to). */
  groups?: { id: number; name: string }[];
  /** Replaces the default datastores (those of the recorded pool, with BASE_PATH under dataDir). */
  datastores?: DoubleDatastoreSeed[];
  /** Where imported images are stored; a fresh temp folder by default (removed on close). */
  dataDir?: string;
  /** How long an image stays LOCKED before the copy starts. */
  importDelayMs?: number;
  /** How long a deleted image stays in DELETE. */
  deleteDelayMs?: number;
  nextImageId?: number;
  /** Maps a front-end path in PATH to a file here (the recorded traffic names /var/tmp/file.img). */
  resolveLocalPath?: (path: string) => string;
  now?: () => Date;
}

export interface SentResponse {
  method: string;
  body: string;
  /** XML documents carried in the reply (IMAGE, IMAGE_POOL, DATASTORE_POOL). */
  documents: string[];
}

export interface DoubleCall {
  method: string;
  user: string;
  params: XmlRpcValue[];
}

export interface OpenNebulaDouble {
  readonly endpoint: string;
  readonly generation: ReplyGeneration;
  readonly dataDir: string;
  /** Every response body sent, in order. */
  readonly responses: readonly SentResponse[];
  /** Every call received (the session string left out). */
  readonly calls: readonly DoubleCall[];
  images(): DoubleImage[];
  image(id: number): DoubleImage | undefined;
  datastore(id: number): DoubleDatastore | undefined;
  /** Registers an image directly (READY unless said otherwise), as if made by another tool. */
  addImage(seed: DoubleImageSeed): DoubleImage;
  /** A VM starts using the image: READY -> USED (USED_PERS when persistent), LOCKED -> LOCKED_USED. */
  attachVm(imageId: number, vmId: number): void;
  detachVm(imageId: number, vmId: number): void;
  /** Makes imports whose PATH the rule returns a message for end in ERROR with that message. */
  failImports(rule?: (path: string) => string | undefined): void;
  /** While held, new images stay LOCKED (the copy never starts). */
  holdImports(hold: boolean): void;
  /** Delays every reply to `method` by `ms` (0 to stop). */
  stall(method: string, ms: number): void;
  setFreeMb(datastoreId: number, freeMb: number): void;
  close(): Promise<void>;
}

class OneFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly objectId = -1,
  ) {
    super(message);
  }
}

class Fault extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const codes = {
  AUTHENTICATION: 0x100,
  AUTHORIZATION: 0x200,
  NO_EXISTS: 0x400,
  ACTION: 0x800,
  XML_RPC_API: 0x1000,
  INTERNAL: 0x2000,
  ALLOCATE: 0x4000,
} as const;
const S = {
  INIT: 0,
  READY: 1,
  USED: 2,
  DISABLED: 3,
  LOCKED: 4,
  ERROR: 5,
  CLONE: 6,
  DELETE: 7,
  USED_PERS: 8,
  LOCKED_USED: 9,
  LOCKED_USED_PERS: 10,
} as const;
const imageTypes = ['OS', 'CDROM', 'DATABLOCK', 'KERNEL', 'RAMDISK', 'CONTEXT'];
const stateNames = [
  'INIT',
  'READY',
  'USED',
  'DISABLED',
  'LOCKED',
  'ERROR',
  'CLONE',
  'DELETE',
  'USED_PERS',
  'LOCKED_USED',
  'LOCKED_USED_PERS',
];
const invalidNameChars = '&|:\\";/\'#{}$<>';
const importingStates: ReadonlySet<number> = new Set([S.LOCKED, S.LOCKED_USED, S.LOCKED_USED_PERS]);
const MiB = 1024 * 1024;

type ParamType = 'string' | 'int' | 'bool';
interface MethodSpec {
  /** The request name 5.x put in front of messages ([ImageInfo] ...). */
  legacy: string;
  params: ParamType[];
  optional: ParamType[];
}
const methodSpecs: Record<string, MethodSpec> = {
  'one.imagepool.info': { legacy: 'ImagePoolInfo', params: ['int', 'int', 'int'], optional: [] },
  'one.image.info': { legacy: 'ImageInfo', params: ['int'], optional: ['bool'] },
  'one.image.allocate': { legacy: 'ImageAllocate', params: ['string', 'int'], optional: ['bool'] },
  'one.image.update': { legacy: 'ImageUpdateTemplate', params: ['int', 'string'], optional: ['int'] },
  'one.image.enable': { legacy: 'ImageEnable', params: ['int', 'bool'], optional: [] },
  'one.image.rename': { legacy: 'ImageRename', params: ['int', 'string'], optional: [] },
  'one.image.chown': { legacy: 'ImageChown', params: ['int', 'int', 'int'], optional: [] },
  'one.image.chmod': {
    legacy: 'ImageChmod',
    params: ['int', 'int', 'int', 'int', 'int', 'int', 'int', 'int', 'int', 'int'],
    optional: [],
  },
  'one.image.delete': { legacy: 'ImageDelete', params: ['int'], optional: ['bool'] },
  'one.datastorepool.info': { legacy: 'DatastorePoolInfo', params: [], optional: [] },
};

const defaultUsers: DoubleUser[] = [
  { id: 0, name: 'oneadmin', password: 'opennebula', gid: 0, gname: 'oneadmin' },
  { id: 2, name: 'user', password: 'opennebula', gid: 1, gname: 'users' },
];

/** The datastores of the recorded one.datastorepool.info, with BASE_PATH moved under dataDir. */
function defaultDatastores(dataDir: string): DoubleDatastoreSeed[] {
  const common = { SAFE_DIRS: '/var/tmp', RESTRICTED_DIRS: '/' };
  return [
    {
      id: 0,
      name: 'system',
      type: 1,
      dsMad: '-',
      tmMad: 'ssh',
      totalMb: 0,
      freeMb: 0,
      usedMb: 0,
      template: { DISK_TYPE: 'FILE', DS_MIGRATE: 'YES', ...common, SHARED: 'NO', TM_MAD: 'ssh', TYPE: 'SYSTEM_DS' },
    },
    {
      id: 1,
      name: 'default',
      type: 0,
      totalMb: 9207,
      freeMb: 7164,
      usedMb: 1553,
      template: {
        CLONE_TARGET: 'SYSTEM',
        DISK_TYPE: 'FILE',
        DS_MAD: 'fs',
        LN_TARGET: 'SYSTEM',
        ...common,
        TM_MAD: 'ssh',
        TYPE: 'IMAGE_DS',
      },
    },
    {
      id: 2,
      name: 'files',
      type: 2,
      totalMb: 9207,
      freeMb: 7164,
      usedMb: 1553,
      template: {
        CLONE_TARGET: 'SYSTEM',
        DS_MAD: 'fs',
        LN_TARGET: 'SYSTEM',
        ...common,
        TM_MAD: 'ssh',
        TYPE: 'FILE_DS',
      },
    },
  ].map((d) => ({ ...d, basePath: join(dataDir, 'datastores', String(d.id)) }));
}

export async function startOpenNebulaDouble(options: OpenNebulaDoubleOptions = {}): Promise<OpenNebulaDouble> {
  const generation = options.generation ?? 7;
  const ownDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'visor-one-double-')));
  const now = options.now ?? (() => new Date());
  const epoch = () => Math.floor(now().getTime() / 1000);
  const users = options.users ?? defaultUsers;
  const groups = new Map<number, string>([
    ...users.map((x) => [x.gid, x.gname] as [number, string]),
    ...(options.groups ?? []).map((g) => [g.id, g.name] as [number, string]),
  ]);
  const importDelayMs = options.importDelayMs ?? 20;
  const deleteDelayMs = options.deleteDelayMs ?? 20;
  const resolveLocal = options.resolveLocalPath ?? ((p: string) => p);

  const datastores = new Map<number, DoubleDatastore>();
  for (const seed of options.datastores ?? defaultDatastores(dataDir)) {
    datastores.set(seed.id, {
      uid: 0,
      gid: 0,
      uname: 'oneadmin',
      gname: 'oneadmin',
      permissions: [1, 1, 0, 1, 0, 0, 0, 0, 0],
      dsMad: 'fs',
      tmMad: 'ssh',
      basePath: join(dataDir, 'datastores', String(seed.id)),
      diskType: 0,
      state: 0,
      clusters: [0],
      totalMb: 10_240,
      freeMb: 10_240,
      usedMb: 0,
      ...seed,
      template: new Map(Object.entries(seed.template ?? {})),
    });
  }
  const images = new Map<number, DoubleImage>();
  const imports = new Map<number, AbortController>();
  const timers = new Set<NodeJS.Timeout>();
  const responses: SentResponse[] = [];
  const calls: DoubleCall[] = [];
  const stalls = new Map<string, number>();
  let nextImageId = options.nextImageId ?? 0;
  let failRule: ((path: string) => string | undefined) | undefined;
  let held = false;

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  // --- authorization (oned's default ACLs, reduced to what images need) ------------------------

  const isAdmin = (u: DoubleUser) => u.id === 0 || u.gid === 0;
  const allowed = (u: DoubleUser, o: { uid: number; gid: number; permissions: number[] }, bit: 0 | 1 | 2) =>
    isAdmin(u) ||
    (o.uid === u.id && o.permissions[bit] === 1) ||
    (o.gid === u.gid && o.permissions[3 + bit] === 1) ||
    o.permissions[6 + bit] === 1;
  const opNames = ['USE', 'MANAGE', 'ADMIN'];

  function imageFor(u: DoubleUser, id: number, bit: 0 | 1 | 2): DoubleImage {
    const image = images.get(id);
    if (!image) throw new OneFailure(codes.NO_EXISTS, `Error getting image [${id}].`, id);
    if (!allowed(u, image, bit))
      throw new OneFailure(
        codes.AUTHORIZATION,
        `User [${u.id}] : Not authorized to perform ${opNames[bit]} IMAGE [${id}].`,
        id,
      );
    return image;
  }

  function touch(image: DoubleImage): void {
    image.modtime = epoch();
  }

  function setState(image: DoubleImage, state: number): void {
    image.prevState = image.state;
    image.state = state;
    touch(image);
  }

  // --- the datastore driver: stat at allocate, copy afterwards -------------------------------

  function checkSafePath(datastore: DoubleDatastore, path: string): void {
    const norm = resolvePath(path);
    const safe = (datastore.template.get('SAFE_DIRS') ?? '').split(/\s+/).filter(Boolean);
    const restricted = (datastore.template.get('RESTRICTED_DIRS') ?? '').split(/\s+/).filter(Boolean);
    if (safe.some((d) => norm.startsWith(d))) return;
    if (restricted.some((d) => norm.startsWith(d)))
      throw new Error(`Not allowed to copy images from ${restricted.join(' ')}`);
  }

  /** libfs.sh fs_size: MiB rounded up; qcow2 counts its virtual size. */
  async function statPath(datastore: DoubleDatastore, path: string): Promise<number> {
    let head: Buffer;
    let bytes: number;
    if (/^https?:\/\//.test(path)) {
      const controller = new AbortController();
      const response = await fetch(path, { signal: controller.signal });
      if (!response.ok || !response.body) throw new Error(`Error downloading ${path}: HTTP ${response.status}`);
      const length = response.headers.get('content-length');
      const reader = response.body.getReader();
      const first = await reader.read();
      controller.abort();
      await reader.cancel().catch(() => undefined);
      if (length === null) throw new Error('Unsupported remote image format');
      head = Buffer.from(first.value ?? new Uint8Array());
      bytes = Number(length);
    } else {
      checkSafePath(datastore, path);
      const file = resolveLocal(path);
      const info = await stat(file).catch(() => undefined);
      if (!info?.isFile()) throw new Error('File not found');
      const handle = await open(file, 'r');
      try {
        head = Buffer.alloc(Math.min(512, info.size));
        await handle.read(head, 0, head.length, 0);
      } finally {
        await handle.close();
      }
      bytes = info.size;
    }
    const size = isQcow2(head) && head.length >= 32 ? Number(head.readBigUInt64BE(24)) : bytes;
    if (size === 0) throw new Error('Runtime error during size estimation');
    return Math.ceil(size / MiB);
  }

  function startImport(image: DoubleImage): void {
    later(importDelayMs, () => {
      if (held || imports.has(image.id) || !images.has(image.id) || !importingStates.has(image.state)) return;
      const controller = new AbortController();
      imports.set(image.id, controller);
      void copy(image, controller.signal).finally(() => imports.delete(image.id));
    });
  }

  async function copy(image: DoubleImage, signal: AbortSignal): Promise<void> {
    const datastore = datastores.get(image.datastoreId)!;
    const target = join(datastore.basePath, createHash('md5').update(randomBytes(16)).digest('hex'));
    const md5 = createHash('md5');
    let head = Buffer.alloc(0);
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        md5.update(chunk);
        if (head.length < 512) head = Buffer.concat([head, chunk]).subarray(0, 512);
        done(null, chunk);
      },
    });
    try {
      const injected = failRule?.(image.path);
      if (injected !== undefined) throw new Error(injected);
      let source: Readable;
      if (/^https?:\/\//.test(image.path)) {
        const response = await fetch(image.path, { signal });
        if (!response.ok || !response.body) throw new Error(`Error downloading ${image.path}: HTTP ${response.status}`);
        source = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
      } else {
        checkSafePath(datastore, image.path);
        source = createReadStream(resolveLocal(image.path));
      }
      await mkdir(datastore.basePath, { recursive: true });
      await pipeline(source, tap, createWriteStream(target, { flags: 'wx' }), { signal });
      const want = image.template.get('MD5');
      const got = md5.digest('hex');
      if (want !== undefined && want.toLowerCase() !== got)
        throw new Error(`Invalid MD5 checksum: expected ${want}, got ${got}`);
      if (!images.has(image.id)) {
        await unlink(target).catch(() => undefined);
        return;
      }
      image.source = target;
      image.format = isQcow2(head) ? 'qcow2' : 'raw';
      datastore.freeMb = Math.max(0, datastore.freeMb - image.sizeMb);
      datastore.usedMb += image.sizeMb;
      setState(
        image,
        image.state === S.LOCKED_USED ? S.USED : image.state === S.LOCKED_USED_PERS ? S.USED_PERS : S.READY,
      );
    } catch (error) {
      await unlink(target).catch(() => undefined);
      if (signal.aborted || !images.has(image.id)) return;
      image.template.set(
        'ERROR',
        `${logTime(now())} : Error copying image in the datastore: ${(error as Error).message}`,
      );
      setState(image, S.ERROR);
    }
  }

  function drop(image: DoubleImage): void {
    images.delete(image.id);
    imports.get(image.id)?.abort();
    const datastore = datastores.get(image.datastoreId);
    if (image.source !== '' && datastore) {
      datastore.freeMb += image.sizeMb;
      datastore.usedMb = Math.max(0, datastore.usedMb - image.sizeMb);
      if (image.source.startsWith(dataDir)) void unlink(image.source).catch(() => undefined);
    }
  }

  // --- the XML-RPC methods -------------------------------------------------------------------

  function visible(u: DoubleUser, filter: number): DoubleImage[] {
    return [...images.values()]
      .filter((i) => {
        if (filter === -3) return i.uid === u.id;
        if (filter === -2) return allowed(u, i, 0);
        if (filter === -1) return i.uid === u.id || (i.gid === u.gid && allowed(u, i, 0));
        if (filter === -4) return i.gid === u.gid && allowed(u, i, 0);
        return i.uid === filter && allowed(u, i, 0);
      })
      .sort((a, b) => a.id - b.id);
  }

  function range(list: DoubleImage[], start: number, end: number): DoubleImage[] {
    if (end < -1) return list.slice(Math.max(0, start), Math.max(0, start) - end);
    return list.filter((i) => (start < 0 || i.id >= start) && (end < 0 || i.id <= end));
  }

  function nameError(name: string): string | undefined {
    if (name === '') return 'Invalid NAME, it cannot be empty';
    const bad = [...name].find((c) => invalidNameChars.includes(c));
    if (bad !== undefined) return `Invalid NAME, char '${bad}' is not allowed`;
    if (name.length > 128) return 'Invalid NAME, max length is 128 chars';
    return undefined;
  }

  function parse(text: string): Map<string, string> {
    try {
      return parseTemplate(text);
    } catch (error) {
      if (error instanceof TemplateSyntaxError) throw new OneFailure(codes.INTERNAL, `Parse error: ${error.message}`);
      throw error;
    }
  }

  async function allocate(u: DoubleUser, text: string, datastoreId: number, noCheckCapacity: boolean): Promise<number> {
    const template = parse(text);
    const datastore = datastores.get(datastoreId);
    if (!datastore) throw new OneFailure(codes.NO_EXISTS, `Error getting datastore [${datastoreId}].`, datastoreId);
    const take = (key: string) => {
      const value = template.get(key);
      template.delete(key);
      return value;
    };
    const name = take('NAME') ?? '';
    const typeName = (take('TYPE') ?? 'OS').toUpperCase();
    const type = imageTypes.indexOf(typeName);
    if (type < 0) throw new OneFailure(codes.ALLOCATE, `Error allocating a new image. Unknown type ${typeName}`);
    const fileType = typeName === 'KERNEL' || typeName === 'RAMDISK' || typeName === 'CONTEXT';
    if (datastore.type === 1)
      throw new OneFailure(codes.INTERNAL, 'New images cannot be allocated in a system datastore.');
    if (datastore.type === 0 && fileType)
      throw new OneFailure(codes.INTERNAL, `IMAGE_DS datastores cannot hold ${typeName} images.`);
    if (datastore.type === 2 && !fileType)
      throw new OneFailure(
        codes.INTERNAL,
        `Only images of type KERNEL, RAMDISK and CONTEXT can be registered in a FILE_DS datastore.`,
      );
    const problem = nameError(name);
    if (problem) throw new OneFailure(codes.ALLOCATE, `Error allocating a new image. ${problem}`);
    const taken = [...images.values()].find((i) => i.uid === u.id && i.name === name);
    if (taken)
      throw new OneFailure(codes.ALLOCATE, `Error allocating a new image. NAME is already taken by IMAGE ${taken.id}.`);
    const path = take('PATH') ?? '';
    if (take('SOURCE') !== undefined)
      throw new OneFailure(
        codes.ALLOCATE,
        'Error allocating a new image. SOURCE images are not implemented by the OpenNebula double.',
      );
    if (path === '')
      throw new OneFailure(codes.ALLOCATE, 'Error allocating a new image. No PATH nor SOURCE in template.');
    let sizeMb: number;
    try {
      sizeMb = await statPath(datastore, path);
    } catch (error) {
      throw new OneFailure(codes.INTERNAL, `Cannot parse image SIZE: ${(error as Error).message}`);
    }
    if (!(noCheckCapacity && isAdmin(u)) && sizeMb > datastore.freeMb)
      throw new OneFailure(codes.ACTION, 'Not enough space in datastore');
    const persistent = (take('PERSISTENT') ?? 'NO').toUpperCase() === 'YES' && !fileType;
    take('SIZE');
    // Until the copy detects it, FORMAT is what the template says (raw by default, as Image::insert sets it).
    const format = (take('FORMAT') ?? take('FSTYPE') ?? template.get('DRIVER') ?? 'raw').toLowerCase();
    take('FSTYPE');
    take('TM_MAD');
    if (fileType) template.delete('DEV_PREFIX');
    else if (!template.has('DEV_PREFIX')) template.set('DEV_PREFIX', typeName === 'CDROM' ? 'hd' : 'hd');
    const id = nextImageId++;
    const t = epoch();
    const image: DoubleImage = {
      id,
      uid: u.id,
      gid: u.gid,
      uname: u.name,
      gname: u.gname,
      name,
      // UMASK 177: owner use + manage (oned.conf default).
      permissions: [1, 1, 0, 0, 0, 0, 0, 0, 0],
      type,
      diskType: 0,
      persistent,
      regtime: t,
      modtime: t,
      source: '',
      path,
      format,
      fs: '',
      sizeMb,
      state: S.LOCKED,
      prevState: S.INIT,
      datastoreId,
      datastore: datastore.name,
      vms: [],
      template,
    };
    images.set(id, image);
    startImport(image);
    return id;
  }

  function update(u: DoubleUser, id: number, text: string, type: number): number {
    const image = imageFor(u, id, 1);
    const template = parse(text);
    if (type === 1) for (const [k, v] of template) image.template.set(k, v);
    else image.template = template;
    touch(image);
    return id;
  }

  function enable(u: DoubleUser, id: number, flag: boolean): number {
    const image = imageFor(u, id, 1);
    const wrong = () =>
      new OneFailure(
        codes.INTERNAL,
        `Could not ${flag ? 'enable' : 'disable'} image: Image cannot be in state ${stateNames[image.state]}.`,
        id,
      );
    if (flag) {
      if (image.state === S.DISABLED) setState(image, S.READY);
      else if (image.state === S.ERROR) setState(image, S.READY);
      else if (image.state !== S.READY) throw wrong();
    } else {
      if (image.state === S.READY || image.state === S.ERROR) setState(image, S.DISABLED);
      else if (image.state !== S.DISABLED) throw wrong();
    }
    return id;
  }

  function rename(u: DoubleUser, id: number, name: string): number {
    const image = imageFor(u, id, 1);
    const problem = nameError(name);
    if (problem) throw new OneFailure(codes.ACTION, problem, id);
    const taken = [...images.values()].find((i) => i.uid === image.uid && i.name === name && i.id !== id);
    if (taken) throw new OneFailure(codes.ACTION, `Name is already taken by IMAGE ${taken.id}.`, id);
    image.name = name;
    touch(image);
    return id;
  }

  /**
   * one.image.chown: -1 leaves owner or group as they are. Changing the owner is oneadmin's; moving
   * an image to a group needs MANAGE on it and, for anyone but oneadmin, membership of the group.
   */
  function chown(u: DoubleUser, id: number, uid: number, gid: number): number {
    const image = imageFor(u, id, 1);
    const refuse = (what: string) =>
      new OneFailure(codes.AUTHORIZATION, `User [${u.id}] : Not authorized to perform ${what}.`, id);
    if (uid !== -1 && !isAdmin(u)) throw refuse(`ADMIN IMAGE [${id}]`);
    if (uid !== -1 && !users.some((x) => x.id === uid)) {
      throw new OneFailure(codes.NO_EXISTS, `Error getting user [${uid}].`, id);
    }
    if (gid === -1) return id;
    const group = groups.get(gid);
    if (group === undefined) throw new OneFailure(codes.NO_EXISTS, `Error getting group [${gid}].`, id);
    if (!isAdmin(u) && u.gid !== gid) throw refuse(`USE GROUP [${gid}]`);
    image.gid = gid;
    image.gname = group;
    touch(image);
    return id;
  }

  function chmod(u: DoubleUser, id: number, perms: number[]): number {
    const image = imageFor(u, id, 1);
    if (perms.some((p) => p < -1 || p > 1))
      throw new OneFailure(codes.XML_RPC_API, 'New permission values must be -1, 0 or 1', id);
    const changesAdmin = [2, 5, 8].some((i) => perms[i] !== -1 && perms[i] !== image.permissions[i]);
    if (changesAdmin && !allowed(u, image, 2))
      throw new OneFailure(codes.AUTHORIZATION, `User [${u.id}] : Not authorized to perform ADMIN IMAGE [${id}].`, id);
    perms.forEach((p, i) => {
      if (p !== -1) image.permissions[i] = p;
    });
    touch(image);
    return id;
  }

  function remove(u: DoubleUser, id: number): number {
    const image = imageFor(u, id, 1);
    const using = image.vms.length;
    const refuse = (why: string) => new OneFailure(codes.ACTION, `Cannot delete image. ${why}`, id);
    switch (image.state) {
      case S.READY:
        if (using > 0) throw refuse(`There are ${using} VMs using it.`);
        break;
      case S.USED:
      case S.USED_PERS:
      case S.LOCKED_USED:
      case S.LOCKED_USED_PERS:
        throw refuse(`There are ${using} VMs using it.`);
      case S.CLONE:
        throw refuse('There are 1 active clone operations.');
      default:
        break;
    }
    if (image.source === '') {
      drop(image);
    } else {
      setState(image, S.DELETE);
      later(deleteDelayMs, () => drop(image));
    }
    return id;
  }

  async function execute(method: string, u: DoubleUser, p: XmlRpcValue[]): Promise<string | number> {
    const n = (i: number) => p[i] as number;
    switch (method) {
      case 'one.imagepool.info':
        return imagePoolXml(range(visible(u, n(0)), n(1), n(2)));
      case 'one.image.info':
        return imageXml(imageFor(u, n(0), 0));
      case 'one.image.allocate':
        return allocate(u, p[0] as string, n(1), p[2] === true);
      case 'one.image.update':
        return update(u, n(0), p[1] as string, p.length > 2 ? n(2) : 0);
      case 'one.image.enable':
        return enable(u, n(0), p[1] as boolean);
      case 'one.image.rename':
        return rename(u, n(0), p[1] as string);
      case 'one.image.chmod':
        return chmod(u, n(0), p.slice(1) as number[]);
      case 'one.image.chown':
        return chown(u, n(0), n(1), n(2));
      case 'one.image.delete':
        return remove(u, n(0));
      case 'one.datastorepool.info':
        return datastorePoolXml(
          [...datastores.values()]
            .sort((a, b) => a.id - b.id)
            .map((d) => ({
              datastore: d,
              images: [...images.values()]
                .filter((i) => i.datastoreId === d.id)
                .map((i) => i.id)
                .sort((a, b) => a - b),
            })),
        );
      default:
        throw new Fault(-506, `Method '${method}' not defined`);
    }
  }

  function checkSignature(method: string, params: XmlRpcValue[]): void {
    const spec = methodSpecs[method];
    if (!spec) throw new Fault(-506, `Method '${method}' not defined`);
    const types = [...spec.params, ...spec.optional];
    if (params.length < spec.params.length || params.length > types.length) {
      throw new Fault(
        -501,
        `Method '${method}' takes ${spec.params.length} parameters after the session, got ${params.length}`,
      );
    }
    params.forEach((value, i) => {
      const want = types[i];
      const ok =
        want === 'string'
          ? typeof value === 'string'
          : want === 'bool'
            ? typeof value === 'boolean'
            : typeof value === 'number' && Number.isInteger(value);
      if (!ok) throw new Fault(-501, `Type mismatch: parameter ${i + 1} of ${method} must be ${want}`);
    });
  }

  async function handle(body: string): Promise<{ method: string; reply: string; documents: string[] }> {
    let method: string;
    let args: XmlRpcValue[];
    try {
      [method, args] = await new Deserializer().deserializeMethodCall(body);
    } catch (error) {
      return {
        method: '?',
        reply: faultResponse(-503, `Call XML not a proper XML-RPC call: ${(error as Error).message}`),
        documents: [],
      };
    }
    const spec = methodSpecs[method];
    const prefix = generation === 5 ? `[${spec?.legacy ?? method}] ` : `[${method}] `;
    const failure = (code: number, message: string, objectId: number): string =>
      methodResponse([
        { boolean: false },
        { string: prefix + message },
        { i4: code },
        ...(generation === 7 ? ([{ i4: objectId }, { i8: 0 }] as XmlRpcOut[]) : []),
      ]);
    try {
      const [session, ...params] = args;
      if (typeof session !== 'string') throw new Fault(-501, 'Type mismatch: the session must be a string');
      checkSignature(method, params);
      calls.push({ method, user: session.split(':')[0] ?? '', params });
      const colon = session.indexOf(':');
      const user = users.find(
        (u) => colon > 0 && u.name === session.slice(0, colon) && u.password === session.slice(colon + 1),
      );
      if (!user)
        return {
          method,
          reply: failure(codes.AUTHENTICATION, "User couldn't be authenticated, aborting call.", -1),
          documents: [],
        };
      const delay = stalls.get(method) ?? 0;
      if (delay > 0) await new Promise((r) => later(delay, () => r(undefined)));
      const result = await execute(method, user, params);
      const reply = methodResponse([
        { boolean: true },
        typeof result === 'string' ? { string: result } : { i4: result },
        { i4: 0 },
      ]);
      return { method, reply, documents: typeof result === 'string' ? [result] : [] };
    } catch (error) {
      if (error instanceof OneFailure)
        return { method, reply: failure(error.code, error.message, error.objectId), documents: [] };
      if (error instanceof Fault) return { method, reply: faultResponse(error.code, error.message), documents: [] };
      return {
        method,
        reply: failure(codes.INTERNAL, `Internal error: ${(error as Error).message}`, -1),
        documents: [],
      };
    }
  }

  // --- HTTP ----------------------------------------------------------------------------------

  const sockets = new Set<Socket>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST' || req.url !== '/RPC2') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > 32 * MiB) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', () => {
      void handle(Buffer.concat(chunks).toString('utf8')).then(({ method, reply, documents }) => {
        responses.push({ method, body: reply, documents });
        if (res.destroyed) return;
        res
          .writeHead(200, {
            'Content-Type': 'text/xml',
            'Content-Length': Buffer.byteLength(reply),
            Server: 'Xmlrpc-c_Abyss/1.40.0',
          })
          .end(reply);
      });
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const snapshot = (i: DoubleImage): DoubleImage => ({
    ...i,
    permissions: [...i.permissions],
    vms: [...i.vms],
    template: new Map(i.template),
  });

  return {
    endpoint: `http://127.0.0.1:${port}/RPC2`,
    generation,
    dataDir,
    responses,
    calls,
    images: () => [...images.values()].sort((a, b) => a.id - b.id).map(snapshot),
    image: (id) => {
      const image = images.get(id);
      return image ? snapshot(image) : undefined;
    },
    datastore: (id) => {
      const d = datastores.get(id);
      return d ? { ...d, template: new Map(d.template) } : undefined;
    },
    addImage(seed) {
      const owner = users.find((u) => u.id === (seed.uid ?? 0)) ?? users[0]!;
      const datastoreId = seed.datastoreId ?? 1;
      const t = epoch();
      const id = seed.id ?? nextImageId++;
      if (id >= nextImageId) nextImageId = id + 1;
      const image: DoubleImage = {
        id,
        uid: owner.id,
        gid: owner.gid,
        uname: owner.name,
        gname: owner.gname,
        permissions: [1, 1, 0, 0, 0, 0, 0, 0, 0],
        type: 0,
        diskType: 0,
        persistent: false,
        regtime: t,
        modtime: t,
        source: '',
        path: '',
        format: 'raw',
        fs: '',
        sizeMb: 1,
        state: S.READY,
        prevState: S.LOCKED,
        datastoreId,
        datastore: datastores.get(datastoreId)?.name ?? 'default',
        vms: [],
        ...seed,
        template:
          seed.template instanceof Map
            ? new Map(seed.template)
            : new Map(Object.entries(seed.template ?? { DEV_PREFIX: 'hd' })),
      };
      images.set(id, image);
      return snapshot(image);
    },
    attachVm(imageId, vmId) {
      const image = images.get(imageId);
      if (!image) throw new Error(`no image ${imageId}`);
      image.vms.push(vmId);
      if (image.state === S.READY) setState(image, image.persistent ? S.USED_PERS : S.USED);
      else if (image.state === S.LOCKED) setState(image, image.persistent ? S.LOCKED_USED_PERS : S.LOCKED_USED);
    },
    detachVm(imageId, vmId) {
      const image = images.get(imageId);
      if (!image) throw new Error(`no image ${imageId}`);
      image.vms = image.vms.filter((v) => v !== vmId);
      if (image.vms.length > 0) return;
      if (image.state === S.USED || image.state === S.USED_PERS) setState(image, S.READY);
      else if (image.state === S.LOCKED_USED || image.state === S.LOCKED_USED_PERS) setState(image, S.LOCKED);
    },
    failImports(rule) {
      failRule = rule;
    },
    holdImports(hold) {
      held = hold;
      if (!hold)
        for (const image of images.values()) if (image.state === S.LOCKED && !imports.has(image.id)) startImport(image);
    },
    stall(method, ms) {
      stalls.set(method, ms);
    },
    setFreeMb(id, freeMb) {
      const d = datastores.get(id);
      if (!d) throw new Error(`no datastore ${id}`);
      d.freeMb = freeMb;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const c of imports.values()) c.abort();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (ownDataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function isQcow2(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32BE(0) === 0x514649fb;
}
