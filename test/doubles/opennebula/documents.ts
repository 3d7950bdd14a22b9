/**
 * The double's objects and their XML documents, shaped as current oned (7.x, share/doc/xsd)
 * writes them: Image::to_xml / Datastore::to_xml element order, strings that oned escapes as
 * CDATA (SOURCE, PATH, FORMAT, FS, driver names, every TEMPLATE value), template attributes
 * sorted by name, and no namespace on the root (the README of OpenNebula's XSD folder).
 */

export interface DoubleImage {
  id: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  name: string;
  /** OWNER_U, OWNER_M, OWNER_A, GROUP_U, GROUP_M, GROUP_A, OTHER_U, OTHER_M, OTHER_A. */
  permissions: number[];
  type: number;
  diskType: number;
  persistent: boolean;
  regtime: number;
  modtime: number;
  source: string;
  path: string;
  format: string;
  fs: string;
  sizeMb: number;
  state: number;
  prevState: number;
  datastoreId: number;
  datastore: string;
  vms: number[];
  template: Map<string, string>;
}

export interface DoubleDatastore {
  id: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  name: string;
  permissions: number[];
  dsMad: string;
  tmMad: string;
  basePath: string;
  type: number;
  diskType: number;
  state: number;
  clusters: number[];
  totalMb: number;
  freeMb: number;
  usedMb: number;
  template: Map<string, string>;
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

const text = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
/** CDATA as oned writes it; a "]]>" inside (which oned's parser never lets in) is split safely. */
const cdata = (s: string) => `<![CDATA[${s.replaceAll(']]>', ']]]]><![CDATA[>')}]]>`;
const el = (name: string, inner: string | number) => `<${name}>${inner}</${name}>`;
const ids = (name: string, list: readonly number[]) => el(name, list.map((id) => el('ID', id)).join(''));

function permissionsXml(p: readonly number[]): string {
  return el('PERMISSIONS', permissionNames.map((n, i) => el(n, p[i] ?? 0)).join(''));
}

function templateXml(t: ReadonlyMap<string, string>): string {
  return el(
    'TEMPLATE',
    [...t.keys()]
      .sort()
      .map((k) => el(k, cdata(t.get(k) ?? '')))
      .join(''),
  );
}

export function imageXml(i: DoubleImage): string {
  return el(
    'IMAGE',
    [
      el('ID', i.id),
      el('UID', i.uid),
      el('GID', i.gid),
      el('UNAME', text(i.uname)),
      el('GNAME', text(i.gname)),
      el('NAME', text(i.name)),
      permissionsXml(i.permissions),
      el('TYPE', i.type),
      el('DISK_TYPE', i.diskType),
      el('PERSISTENT', i.persistent ? 1 : 0),
      el('REGTIME', i.regtime),
      el('MODTIME', i.modtime),
      el('SOURCE', cdata(i.source)),
      el('PATH', cdata(i.path)),
      el('FORMAT', cdata(i.format)),
      el('FS', cdata(i.fs)),
      el('SIZE', i.sizeMb),
      el('STATE', i.state),
      el('PREV_STATE', i.prevState),
      el('RUNNING_VMS', i.vms.length),
      el('CLONING_OPS', 0),
      el('CLONING_ID', -1),
      el('TARGET_SNAPSHOT', -1),
      el('DATASTORE_ID', i.datastoreId),
      el('DATASTORE', text(i.datastore)),
      ids('VMS', i.vms),
      ids('CLONES', []),
      ids('APP_CLONES', []),
      templateXml(i.template),
      el(
        'SNAPSHOTS',
        el('ALLOW_ORPHANS', cdata('NO')) + el('CURRENT_BASE', cdata('-1')) + el('NEXT_SNAPSHOT', cdata('0')),
      ),
      el('BACKUP_INCREMENTS', ''),
    ].join(''),
  );
}

export function imagePoolXml(images: readonly DoubleImage[]): string {
  return el('IMAGE_POOL', images.map(imageXml).join(''));
}

export function datastoreXml(d: DoubleDatastore, images: readonly number[]): string {
  return el(
    'DATASTORE',
    [
      el('ID', d.id),
      el('UID', d.uid),
      el('GID', d.gid),
      el('UNAME', text(d.uname)),
      el('GNAME', text(d.gname)),
      el('NAME', text(d.name)),
      permissionsXml(d.permissions),
      el('DS_MAD', cdata(d.dsMad)),
      el('TM_MAD', cdata(d.tmMad)),
      el('BASE_PATH', cdata(d.basePath)),
      el('TYPE', d.type),
      el('DISK_TYPE', d.diskType),
      el('STATE', d.state),
      ids('CLUSTERS', d.clusters),
      el('TOTAL_MB', d.totalMb),
      el('FREE_MB', d.freeMb),
      el('USED_MB', d.usedMb),
      ids('IMAGES', images),
      templateXml(d.template),
    ].join(''),
  );
}

export function datastorePoolXml(
  datastores: readonly { datastore: DoubleDatastore; images: readonly number[] }[],
): string {
  return el('DATASTORE_POOL', datastores.map((d) => datastoreXml(d.datastore, d.images)).join(''));
}

/** one_util::log_time(), the stamp oned puts in front of TEMPLATE/ERROR. */
export function logTime(date: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const two = (n: number) => String(n).padStart(2, '0');
  const time = `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())}`;
  const day = `${days[date.getUTCDay()]} ${months[date.getUTCMonth()]} ${two(date.getUTCDate())}`;
  return `${day} ${time} ${date.getUTCFullYear()}`;
}
