import { createHash } from 'node:crypto';

export interface StreamImage {
  product: string;
  version: string;
  release: string;
  arch: string;
  data: Buffer;
  ftype?: string;
  path?: string;
}

const sum = (alg: string, data: Buffer) => createHash(alg).update(data).digest('hex');
export const contentId = 'org.visor.test:released:download';

/** A products:1.0 document, fields at each level as Canonical's streams put them. */
export function productsDoc(images: StreamImage[], updated = 'Mon, 07 Dec 2026 10:00:00 +0000'): Buffer {
  const products: Record<
    string,
    { versions: Record<string, { items: Record<string, unknown> } & Record<string, unknown>> } & Record<string, unknown>
  > = {};
  for (const image of images) {
    products[image.product] ??= {
      arch: image.arch,
      os: 'ubuntu',
      release: image.release,
      version: image.release === 'noble' ? '24.04' : '22.04',
      release_title: image.release,
      support_eol: '2032-04-25',
      versions: {},
    };
    const product = products[image.product]!;
    product.versions[image.version] ??= {
      pubname: `ubuntu-${image.release}-${image.arch}-${image.version}`,
      label: 'release',
      items: {},
    };
    const version = product.versions[image.version]!;
    version.items[image.ftype ?? 'disk1.img'] = {
      ftype: image.ftype ?? 'disk1.img',
      path: image.path ?? `server/${image.release}/${image.version}/${image.release}-${image.arch}.img`,
      size: image.data.length,
      md5: sum('md5', image.data),
      sha256: sum('sha256', image.data),
    };
  }
  return Buffer.from(
    JSON.stringify(
      { format: 'products:1.0', content_id: contentId, datatype: 'image-downloads', updated, products },
      null,
      1,
    ),
  );
}

export function indexDoc(productsPath: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      format: 'index:1.0',
      updated: 'Mon, 07 Dec 2026 10:00:00 +0000',
      index: { [contentId]: { datatype: 'image-downloads', format: 'products:1.0', path: productsPath, products: [] } },
    }),
  );
}

export function imagePath(image: StreamImage): string {
  return image.path ?? `server/${image.release}/${image.version}/${image.release}-${image.arch}.img`;
}
