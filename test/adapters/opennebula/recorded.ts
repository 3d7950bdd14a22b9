import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { repoRoot } from '../../support/cli.js';
import type { DoubleDatastoreSeed, DoubleImageSeed } from '../../doubles/opennebula/index.js';

/**
 * The recorded OpenNebula 5.x traffic (cloudkeeper-one's VCR cassettes, see the .source.txt
 * files in test/fixtures/opennebula/xmlrpc) and what the double needs to replay it.
 */

const dir = join(repoRoot, 'test/fixtures/opennebula/xmlrpc');

export function recorded(label: string, part: 'request' | 'response'): string {
  return readFileSync(join(dir, `${label}.${part}.xml`), 'utf8');
}

export function recordedPayload(label: string, root: 'IMAGE' | 'IMAGE_POOL' | 'DATASTORE_POOL'): string {
  return readFileSync(join(dir, `${label}.payload.${root}.xml`), 'utf8');
}

const permissionNames = [
  'OWNER_U',
  'OWNER_M',
  'OWNER_A',
  'GROUP_U',
  'GROUP_M',
  'GROUP_A',
  'OTHER_U',
  'OTHER_M',
  'OTHER_A',
];
const lists = new Set(['IMAGE_POOL.IMAGE', 'IMAGE.VMS.ID', 'IMAGE_POOL.IMAGE.VMS.ID']);

type Node = Record<string, unknown>;
const str = (v: unknown) => (typeof v === 'string' ? v : '');

/** Image seeds that make the double hold exactly the images of a recorded IMAGE or IMAGE_POOL document. */
export function imageSeedsFrom(payload: string): DoubleImageSeed[] {
  const doc = new XMLParser({ parseTagValue: false, isArray: (_n, jpath) => lists.has(String(jpath)) }).parse(
    payload,
  ) as Node;
  const pool = doc['IMAGE_POOL'];
  const list = (pool !== undefined ? ((pool as Node)['IMAGE'] ?? []) : [doc['IMAGE']]) as Node[];
  return list.map((i) => {
    const perms = i['PERMISSIONS'] as Node;
    const vms = i['VMS'];
    const template = i['TEMPLATE'] === '' ? {} : (i['TEMPLATE'] as Record<string, string>);
    return {
      id: Number(i['ID']),
      uid: Number(i['UID']),
      gid: Number(i['GID']),
      uname: str(i['UNAME']),
      gname: str(i['GNAME']),
      name: str(i['NAME']),
      permissions: permissionNames.map((k) => Number(perms[k])),
      type: Number(i['TYPE']),
      diskType: Number(i['DISK_TYPE']),
      persistent: i['PERSISTENT'] === '1',
      regtime: Number(i['REGTIME']),
      modtime: Number(i['REGTIME']),
      source: str(i['SOURCE']),
      path: str(i['PATH']),
      format: str(i['FSTYPE']),
      fs: '',
      sizeMb: Number(i['SIZE']),
      state: Number(i['STATE']),
      prevState: Number(i['STATE']),
      datastoreId: Number(i['DATASTORE_ID']),
      datastore: str(i['DATASTORE']),
      vms: typeof vms === 'object' && vms !== null ? ((vms as Node)['ID'] as string[]).map(Number) : [],
      template: new Map(Object.entries(template)),
    };
  });
}

/** The datastores of the recorded one.datastorepool.info, BASE_PATHs as recorded. */
export const recordedDatastores: DoubleDatastoreSeed[] = [
  {
    id: 0,
    name: 'system',
    type: 1,
    dsMad: '-',
    tmMad: 'ssh',
    basePath: '/var/lib/one//datastores/0',
    totalMb: 0,
    freeMb: 0,
    usedMb: 0,
    template: {
      DISK_TYPE: 'FILE',
      DS_MIGRATE: 'YES',
      RESTRICTED_DIRS: '/',
      SAFE_DIRS: '/var/tmp',
      SHARED: 'NO',
      TM_MAD: 'ssh',
      TYPE: 'SYSTEM_DS',
    },
  },
  {
    id: 1,
    name: 'default',
    type: 0,
    dsMad: 'fs',
    tmMad: 'ssh',
    basePath: '/var/lib/one//datastores/1',
    totalMb: 9207,
    freeMb: 7164,
    usedMb: 1553,
    template: {
      CLONE_TARGET: 'SYSTEM',
      DISK_TYPE: 'FILE',
      DS_MAD: 'fs',
      LN_TARGET: 'SYSTEM',
      RESTRICTED_DIRS: '/',
      SAFE_DIRS: '/var/tmp',
      TM_MAD: 'ssh',
      TYPE: 'IMAGE_DS',
    },
  },
  {
    id: 2,
    name: 'files',
    type: 2,
    dsMad: 'fs',
    tmMad: 'ssh',
    basePath: '/var/lib/one//datastores/2',
    totalMb: 9207,
    freeMb: 7164,
    usedMb: 1553,
    template: {
      CLONE_TARGET: 'SYSTEM',
      DS_MAD: 'fs',
      LN_TARGET: 'SYSTEM',
      RESTRICTED_DIRS: '/',
      SAFE_DIRS: '/var/tmp',
      TM_MAD: 'ssh',
      TYPE: 'FILE_DS',
    },
  },
];

/**
 * A current (7.x) IMAGE document as 5.x wrote it, by undoing exactly the documented version
 * differences (onedb 5.12.0_to_6.0.0.rb and the 7.0 MODTIME commit, apis.md §3.3): FORMAT + FS
 * were FSTYPE; MODTIME, PREV_STATE and BACKUP_INCREMENTS did not exist; SNAPSHOTS had no
 * ALLOW_ORPHANS / CURRENT_BASE / NEXT_SNAPSHOT.
 */
export function as5x(document: string): string {
  return document
    .replace(/<MODTIME>\d+<\/MODTIME>/g, '')
    .replace(/<FORMAT>(<!\[CDATA\[[^\]]*\]\]>)<\/FORMAT><FS><!\[CDATA\[\]\]><\/FS>/g, '<FSTYPE>$1</FSTYPE>')
    .replace(/<PREV_STATE>\d+<\/PREV_STATE>/g, '')
    .replace(/<SNAPSHOTS>.*?<\/SNAPSHOTS>/g, '<SNAPSHOTS></SNAPSHOTS>')
    .replace(/<BACKUP_INCREMENTS><\/BACKUP_INCREMENTS>/g, '');
}

/** The inverse of `as5x`: a recorded 5.x IMAGE document with the 6.x/7.x additions put in. */
export function as7x(document: string): string {
  return document
    .replace(/<REGTIME>(\d+)<\/REGTIME>/g, '<REGTIME>$1</REGTIME><MODTIME>$1</MODTIME>')
    .replace(/<FSTYPE>(<!\[CDATA\[[^\]]*\]\]>)<\/FSTYPE><SIZE>/g, '<FORMAT>$1</FORMAT><FS><![CDATA[]]></FS><SIZE>')
    .replace(/<STATE>(\d+)<\/STATE>/g, '<STATE>$1</STATE><PREV_STATE>$1</PREV_STATE>')
    .replace(
      /<SNAPSHOTS><\/SNAPSHOTS>/g,
      '<SNAPSHOTS><ALLOW_ORPHANS><![CDATA[NO]]></ALLOW_ORPHANS><CURRENT_BASE><![CDATA[-1]]></CURRENT_BASE>' +
        '<NEXT_SNAPSHOT><![CDATA[0]]></NEXT_SNAPSHOT></SNAPSHOTS><BACKUP_INCREMENTS></BACKUP_INCREMENTS>',
    );
}
