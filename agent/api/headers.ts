/** How image metadata travels in HTTP headers (shared by server and client, dependency-free). */
export const META_PREFIX = 'x-image-meta-';

/** Header values are ASCII: anything else (and %) is percent-encoded UTF-8. */
export function encodeHeaderValue(value: string): string {
  return value.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
}

export function decodeHeaderValue(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
