import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ContentSource } from '../iaas/port.js';
import type { ContainerFormat, DiskFormat } from '../image/model.js';

/** Content held in memory, for driver tests; `lie` declares checksums that do not match. */
export function bufferContent(
  data: Buffer,
  diskFormat: DiskFormat = 'raw',
  options: { lie?: boolean; containerFormat?: ContainerFormat; url?: string } = {},
): ContentSource {
  const hashed = options.lie ? Buffer.concat([data, Buffer.from('lie')]) : data;
  const digest = (alg: string) => createHash(alg).update(hashed).digest('hex');
  return {
    size: data.length,
    checksums: { md5: digest('md5'), sha256: digest('sha256'), sha512: digest('sha512') },
    diskFormat,
    containerFormat: options.containerFormat ?? 'bare',
    open: async (range) =>
      Readable.from([range ? data.subarray(range.start, range.end === undefined ? undefined : range.end + 1) : data]),
    ...(options.url ? { url: options.url } : {}),
  };
}

/** 1 MiB + 1 byte of random data: not a multiple of any block size. */
export function randomImageBytes(size = 1024 * 1024 + 1): Buffer {
  return randomBytes(size);
}
