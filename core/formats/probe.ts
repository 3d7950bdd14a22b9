import type { ImageReader } from './reader.js';

/** The few ranges every signature check looks at, read once for all formats. */
export interface ProbeInput {
  size: number;
  /** The first 512 bytes (fewer for a smaller file). */
  head: Buffer;
  /** 2 KiB at 32 KiB: where ISO 9660 and UDF put their first volume descriptor. */
  isoArea: Buffer;
  /** The last 512 bytes: where a VHD keeps its footer. */
  tail: Buffer;
}

export const isoAreaOffset = 32 * 1024;

export async function readProbeInput(reader: ImageReader): Promise<ProbeInput> {
  const size = reader.size;
  const head = await reader.read(0, 512);
  const isoArea = size >= isoAreaOffset + 2048 ? await reader.read(isoAreaOffset, 2048) : Buffer.alloc(0);
  const tail = size >= 1024 ? await reader.read(size - 512, 512) : head.length === 512 ? head : Buffer.alloc(0);
  return { size, head, isoArea, tail };
}

export function startsWith(buffer: Buffer, magic: string | Buffer, offset = 0): boolean {
  const bytes = typeof magic === 'string' ? Buffer.from(magic, 'latin1') : magic;
  return buffer.length >= offset + bytes.length && buffer.subarray(offset, offset + bytes.length).equals(bytes);
}
