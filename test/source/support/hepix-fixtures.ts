import { createHash } from 'node:crypto';
import type { Signer } from './test-pki.js';

export interface FixtureImage {
  id: string;
  title: string;
  version: string;
  data: Buffer;
  url: string;
  format?: string;
  expires?: string;
  /** Declare another digest than the data's (a list that lies). */
  sha512?: string;
}

const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');

/** A HEPiX image list as AppDB writes it (sizes as strings, an `ad:vo`). */
export function hepixList(options: {
  signer: Pick<Signer, 'dn' | 'caDn'>;
  version: string;
  images: FixtureImage[];
  expires?: string;
  identifier?: string;
}): Buffer {
  const list = {
    'hv:imagelist': {
      'dc:identifier': options.identifier ?? 'a3fd6c1e-7a4c-4b1e-9a55-visor-test',
      'dc:title': 'visor test VO image list',
      'dc:description': 'images for the visor tests',
      'dc:date:created': inDays(-1),
      'dc:date:expires': options.expires ?? inDays(28),
      'dc:source': 'https://appdb.example.org/',
      'hv:version': options.version,
      'hv:uri': 'https://appdb.example.org/store/vo/visor.test/image.list',
      'ad:vo': 'visor.test',
      'hv:endorser': {
        'hv:x509': {
          'dc:creator': 'visor tests',
          'hv:ca': options.signer.caDn,
          'hv:dn': options.signer.dn,
          'hv:email': 'tests@visor.invalid',
        },
      },
      'hv:images': options.images.map((image) => ({
        'hv:image': {
          'dc:identifier': image.id,
          'dc:title': image.title,
          'dc:description': `${image.title} for tests`,
          ...(image.expires ? { 'dc:date:expires': image.expires } : {}),
          'hv:uri': image.url,
          'hv:format': image.format ?? 'QCOW2',
          'hv:size': String(image.data.length),
          'hv:version': image.version,
          'hv:hypervisor': 'QEMU,KVM',
          'hv:ram_minimum': '1024',
          'hv:core_minimum': '1',
          'sl:arch': 'x86_64',
          'sl:checksum:sha512': image.sha512 ?? createHash('sha512').update(image.data).digest('hex'),
          'sl:os': 'Linux',
          'sl:osname': 'AlmaLinux',
          'sl:osversion': '9.4',
          'ad:mpuri': `https://appdb.example.org/store/vm/image/${image.id}:1/`,
          'ad:group': 'General group',
        },
      })),
    },
  };
  // AppDB's lists are CRLF text, as S/MIME canonical form wants.
  return Buffer.from(JSON.stringify(list, null, 2).replace(/\n/g, '\r\n'));
}

export { inDays };
