import { z } from 'zod';
import type { Architecture, ContainerFormat, DiskFormat } from '../../image/model.js';
import { formatPath } from '../../validation.js';
import { httpUrl } from '../fetch.js';
import { sourceError, type SourceEntry } from '../port.js';

const text = z.string().trim().min(1);
const date = text.refine((v) => !Number.isNaN(Date.parse(v)), 'must be a date');
// AppDB writes sizes as strings, old lists as numbers.
const size = z.union([z.number().int().nonnegative(), z.string().regex(/^\d{1,16}$/).transform(Number)]);
const scalar = z.union([z.string(), z.number()]).transform(String);

const imageSchema = z.looseObject({
  'dc:identifier': text,
  'dc:title': text,
  'dc:description': z.string().optional(),
  'dc:date:expires': date.optional(),
  'hv:uri': text,
  'hv:format': z.string().optional(),
  'hv:size': size,
  'hv:version': scalar.optional(),
  'hv:hypervisor': z.string().optional(),
  'hv:ram_minimum': scalar.optional(),
  'hv:core_minimum': scalar.optional(),
  'sl:arch': z.string().optional(),
  'sl:checksum:sha512': z.string().regex(/^[0-9a-fA-F]{128}$/, 'must be a SHA-512 digest (128 hex digits)'),
  'sl:os': z.string().optional(),
  'sl:osname': z.string().optional(),
  'sl:osversion': scalar.optional(),
  'ad:mpuri': z.string().optional(),
  'ad:group': z.string().optional(),
});

export const hepixListSchema = z.strictObject({
  'hv:imagelist': z.looseObject({
    'dc:identifier': text,
    'dc:title': z.string().optional(),
    'dc:description': z.string().optional(),
    'dc:date:created': date.optional(),
    'dc:date:expires': date,
    'dc:source': z.string().optional(),
    'hv:version': scalar,
    'hv:uri': z.string().optional(),
    'hv:endorser': z.looseObject({
      'hv:x509': z.looseObject({
        'dc:creator': z.string().optional(),
        'hv:ca': text,
        'hv:dn': text,
        'hv:email': z.string().optional(),
      }),
    }),
    'hv:images': z.array(z.looseObject({ 'hv:image': imageSchema })),
    'ad:vo': z.string().optional(),
  }),
});

export type HepixList = z.infer<typeof hepixListSchema>['hv:imagelist'];
type HepixImage = z.infer<typeof imageSchema>;

/** Parses the verified content of a list: JSON of the `hv:imagelist` shape, or a `malformed` refusal. */
export function parseHepixList(content: Buffer): HepixList {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch (error) {
    throw sourceError('malformed', `the image list is not JSON: ${(error as Error).message}`);
  }
  const parsed = hepixListSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 5).map((i) => `${formatPath(i.path) || 'list'}: ${i.message}`);
    throw sourceError('malformed', `not a HEPiX image list: ${issues.join('; ')}`);
  }
  const keys = new Set<string>();
  for (const { 'hv:image': image } of parsed.data['hv:imagelist']['hv:images']) {
    if (keys.has(image['dc:identifier'])) throw sourceError('malformed', `image ${image['dc:identifier']} appears twice in the list`);
    keys.add(image['dc:identifier']);
    if (!httpUrl(image['hv:uri'])) throw sourceError('unsafePath', `image ${image['dc:identifier']}: hv:uri must be an http(s) URL`);
  }
  return parsed.data['hv:imagelist'];
}

const formats: Record<string, { diskFormat?: DiskFormat; containerFormat?: ContainerFormat }> = {
  qcow2: { diskFormat: 'qcow2', containerFormat: 'bare' },
  qcow: { diskFormat: 'qcow2', containerFormat: 'bare' },
  raw: { diskFormat: 'raw', containerFormat: 'bare' },
  img: {},
  vmdk: { diskFormat: 'vmdk', containerFormat: 'bare' },
  vdi: { diskFormat: 'vdi', containerFormat: 'bare' },
  vhd: { diskFormat: 'vhd', containerFormat: 'bare' },
  vhdx: { diskFormat: 'vhdx', containerFormat: 'bare' },
  iso: { diskFormat: 'iso', containerFormat: 'bare' },
  // An OVA's disk format is what its disk turns out to be: the inspector tells.
  ova: { containerFormat: 'ova' },
};

const arches: Record<string, Architecture> = {
  x86_64: 'x86_64',
  'x86-64': 'x86_64',
  amd64: 'x86_64',
  '64bit': 'x86_64',
  i386: 'i386',
  i686: 'i386',
  x86: 'i386',
  '32bit': 'i386',
  aarch64: 'aarch64',
  arm64: 'aarch64',
  ppc64le: 'ppc64le',
  ppc64el: 'ppc64le',
  s390x: 's390x',
};

/** An image of the list as a source entry; the list's expiry applies to images without their own. */
export function hepixEntry(list: HepixList, image: HepixImage, signer: string): SourceEntry {
  const format = formats[(image['hv:format'] ?? '').trim().toLowerCase()] ?? {};
  const arch = arches[(image['sl:arch'] ?? '').trim().toLowerCase()];
  const osType = image['sl:os']?.trim().toLowerCase();
  const distro = image['sl:osname']?.trim().toLowerCase();
  const properties: Record<string, string> = {
    'hepix:list': list['dc:identifier'],
    'hepix:identifier': image['dc:identifier'],
  };
  const put = (key: string, value: string | undefined) => {
    if (value !== undefined && value.trim() !== '') properties[key] = value.trim();
  };
  put('hepix:version', image['hv:version']);
  put('hepix:format', image['hv:format']);
  put('hepix:hypervisor', image['hv:hypervisor']);
  put('hepix:ram_minimum', image['hv:ram_minimum']);
  put('hepix:core_minimum', image['hv:core_minimum']);
  put('hepix:vo', list['ad:vo']);
  put('hepix:mpuri', image['ad:mpuri']);
  put('hepix:group', image['ad:group']);
  const sha512 = image['sl:checksum:sha512'].toLowerCase();
  return {
    key: image['dc:identifier'],
    // Lists without an image version still change the digest when the file changes.
    version: image['hv:version'] ?? `sha512:${sha512.slice(0, 16)}`,
    name: image['dc:title'],
    ...(image['dc:description'] ? { description: image['dc:description'] } : {}),
    location: { url: image['hv:uri'] },
    size: image['hv:size'],
    checksums: { sha512 },
    ...format,
    ...(arch ? { architecture: arch } : {}),
    ...(osType || distro || image['sl:osversion']
      ? {
          os: {
            ...(osType ? { type: osType } : {}),
            ...(distro ? { distro } : {}),
            ...(image['sl:osversion'] ? { version: image['sl:osversion'] } : {}),
          },
        }
      : {}),
    expiresAt: new Date(image['dc:date:expires'] ?? list['dc:date:expires']).toISOString(),
    endorser: signer,
    properties,
  };
}

/** Orders versions such as `1.10` > `1.9` > `1.2.3`: numeric runs compare as numbers. */
export function compareVersions(a: string, b: string): number {
  const split = (v: string) => v.match(/\d+|[^\d]+/g) ?? [];
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const p = x[i];
    const q = y[i];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    const numeric = /^\d/.test(p) && /^\d/.test(q);
    const order = numeric ? Number(p) - Number(q) : p < q ? -1 : p > q ? 1 : 0;
    if (order !== 0) return Math.sign(order);
  }
  return 0;
}
