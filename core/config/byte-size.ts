import { z } from 'zod';

const units: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** A size in bytes: a number, or text such as `500MB`, `10GiB`, `1.5TiB` (decimal and binary units). */
export const byteSize = z
  .union([
    z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    z.string().regex(/^\s*\d+(\.\d+)?\s*([kmgt]i?)?b\s*$/i, 'a size like 500MB, 10GiB or 1TiB'),
  ])
  .transform((value) => (typeof value === 'number' ? value : parseByteSize(value)));

export function parseByteSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*$/i.exec(text);
  if (!match) throw new Error(`bad size ${text}`);
  return Math.round(Number(match[1]) * units[match[2]!.toLowerCase()]!);
}

/** A size for people: the largest binary unit that keeps it at 1 or more. */
export function formatBytes(bytes: number): string {
  for (const [unit, factor] of [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= factor) return `${Number((bytes / factor).toFixed(2))} ${unit}`;
  }
  return `${bytes} bytes`;
}
