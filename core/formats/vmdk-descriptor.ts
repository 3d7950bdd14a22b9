import type { Problem } from './types.js';

/** One extent line: `RW 2097152 SPARSE "disk.vmdk"` (access, sectors, type, file, offset). */
export interface VmdkExtent {
  access: string;
  sectors: number;
  type: string;
  file?: string;
  line: number;
}

export interface VmdkDescriptor {
  createType?: string;
  extents: VmdkExtent[];
  problems: Problem[];
}

/** Descriptor bytes visor reads at most; qemu-img writes 10 KiB, VMware tools less. */
export const maxDescriptorBytes = 64 * 1024;

const extentAccess = new Set(['rw', 'rdonly', 'noaccess']);
const extentPattern = /^(rw|rdonly|noaccess)\s+(\d+)\s+([a-z0-9]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$/i;

/**
 * Parses a VMDK text descriptor cautiously, as Glance does: every line must be a comment, a
 * `ddb.` entry, a `key=value` header field or an extent line; anything else is refused, since
 * qemu might read it in a way visor does not.
 */
export function parseVmdkDescriptor(data: Buffer): VmdkDescriptor {
  const problems: Problem[] = [];
  const nul = data.indexOf(0);
  const bytes = nul >= 0 ? data.subarray(0, nul) : data;
  if (!bytes.every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b < 0x7f))) {
    return { extents: [], problems: [{ kind: 'unsafe', reason: 'VMDK descriptor is not plain ASCII text' }] };
  }
  const extents: VmdkExtent[] = [];
  let createType: string | undefined;
  const lines = bytes.toString('latin1').split('\n');
  lines.forEach((raw, index) => {
    const line = raw.trim();
    const number = index + 1;
    if (line === '' || line.startsWith('#')) return;
    const first = line.split(/\s+/)[0]?.toLowerCase() ?? '';
    if (extentAccess.has(first)) {
      const match = extentPattern.exec(line);
      if (!match) {
        problems.push({
          kind: 'unsafe',
          reason: `VMDK descriptor line ${number} is not a valid extent: ${quote(line)}`,
        });
        return;
      }
      const [, access = '', sectors = '0', type = '', file] = match;
      extents.push({
        access: access.toUpperCase(),
        sectors: Number(sectors),
        type: type.toUpperCase(),
        ...(file === undefined ? {} : { file }),
        line: number,
      });
      return;
    }
    const eq = line.indexOf('=');
    if (eq > 0 && !/\s/.test(line.slice(0, eq).trim())) {
      const key = line.slice(0, eq).trim();
      if (key.toLowerCase() === 'createtype')
        createType = line
          .slice(eq + 1)
          .trim()
          .replace(/^"(.*)"$/, '$1');
      return; // ddb.* entries are key=value lines too
    }
    problems.push({ kind: 'unsafe', reason: `VMDK descriptor line ${number} is not understood: ${quote(line)}` });
  });
  return { ...(createType === undefined ? {} : { createType }), extents, problems };
}

/** A name of another file, as an extent might give it: plain, with no directory part. */
export function isPlainFileName(name: string): boolean {
  return name.length > 0 && !/[/\\]/.test(name) && name !== '.' && name !== '..' && !name.includes('\0');
}

function quote(line: string): string {
  return JSON.stringify(line.length > 80 ? `${line.slice(0, 80)}…` : line);
}
