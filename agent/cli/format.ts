/** Human-friendly byte counts for tables (scripts use --json). */
export function humanSize(bytes: unknown): string {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** VISOR's `KEY: value` block for one image; keys upper-cased and aligned. */
export function keyValueBlock(record: Record<string, unknown>): string {
  const entries = Object.entries(record)
    .filter(([, v]) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0))
    .map(
      ([k, v]) =>
        [
          k.toUpperCase(),
          typeof v === 'object' ? (Array.isArray(v) ? v.join(', ') : JSON.stringify(v)) : String(v),
        ] as const,
    );
  const width = Math.max(0, ...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v}`).join('\n');
}

/** Order of the most useful fields first in a detail block, then the rest (custom properties). */
export function orderDetail(image: Record<string, unknown>): Record<string, unknown> {
  const first = [
    '_id',
    'uri',
    'name',
    'architecture',
    'access',
    'status',
    'type',
    'format',
    'container_format',
    'store',
    'size',
    'checksum',
    'owner',
    'created_at',
    'updated_at',
    'uploaded_at',
  ];
  const out: Record<string, unknown> = {};
  for (const key of first) if (key in image) out[key] = image[key];
  for (const [key, value] of Object.entries(image)) if (!(key in out)) out[key] = value;
  return out;
}
