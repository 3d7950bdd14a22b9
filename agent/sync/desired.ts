import type { SyncPolicy } from '../../core/config/sync-policy.js';
import type { DriverCapabilities } from '../../core/iaas/port.js';
import type { Access, DiskFormat, Image } from '../../core/image/model.js';

/** Properties an imported image carries: which cloud it came from, so it is never pushed back there. */
export const ORIGIN_TARGET = 'visor_origin_target';
export const ORIGIN_ID = 'visor_origin_id';

/**
 * Whether a catalog image that came from a cloud counts as imported: a metadata import is done
 * when its record exists (`locked`), a full one when its bits are stored (`available`). A full
 * import writes its record as `uploading` from the first write on, so a record cut off by a crash,
 * or one whose import failed (`error`), never counts: the next run imports again, into that
 * record, and no catalog image stands for bits it does not have.
 */
export function importFinished(image: Image): boolean {
  return image.status === 'locked' || image.status === 'available';
}

/** What a catalog image should look like in one cloud. */
export interface DesiredImage {
  /** The catalog image, with name and access translated for the target. */
  image: Image;
  /** Format the cloud gets; undefined when the catalog does not know the image's format (found by inspection). */
  diskFormat: DiskFormat | undefined;
  /** Why this format: `as is`, or a conversion. */
  convertFrom: DiskFormat | undefined;
}

/** Converts `*` and `?` globs to an anchored regular expression. */
export function globToRegExp(glob: string): RegExp {
  const escaped = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

/** The policy's selector as a predicate; its name globs are compiled once, not once per image. */
export function selectorFor(policy: SyncPolicy, target: string): (image: Image) => boolean {
  const s = policy.selector;
  const names = s.names?.map(globToRegExp);
  return (image) => {
    if (image.status !== 'available') return false;
    if (image.properties[ORIGIN_TARGET] === target) return false;
    if (!s.access.includes(image.access)) return false;
    if (names && !names.some((re) => re.test(image.name))) return false;
    if (s.tags && !s.tags.every((tag) => image.tags.includes(tag))) return false;
    if (s.properties && !Object.entries(s.properties).every(([k, v]) => image.properties[k] === v)) return false;
    if (s.architectures && !s.architectures.includes(image.architecture)) return false;
    return true;
  };
}

/** True when the policy's selector picks `image` for this target. */
export function isSelected(image: Image, policy: SyncPolicy, target: string): boolean {
  return selectorFor(policy, target)(image);
}

export function renderName(template: string, image: Image): string {
  return nameRenderer(template)(image);
}

const nameValues: Record<string, (image: Image) => string> = {
  name: (image) => image.name,
  id: (image) => image.id,
  shortId: (image) => image.id.slice(0, 8),
  architecture: (image) => image.architecture,
  format: (image) => image.diskFormat ?? '',
  os_distro: (image) => image.os?.distro ?? '',
  os_version: (image) => image.os?.version ?? '',
  revision: (image) => String(image.revision),
};

/**
 * The naming template compiled once per plan: literal parts and value getters, joined per image
 * (a regular-expression replace and an object of every value per image cost a third of planning
 * 100,000 images; unknown keys render empty; an empty result falls back to the image's name).
 */
export function nameRenderer(template: string): (image: Image) => string {
  if (template === '{name}') return (image) => image.name.trim() || image.name;
  const parts: (string | ((image: Image) => string))[] = [];
  let last = 0;
  for (const match of template.matchAll(/\{([^}]*)\}/g)) {
    parts.push(template.slice(last, match.index));
    const key = match[1]!;
    parts.push(Object.hasOwn(nameValues, key) ? nameValues[key]! : () => '');
    last = match.index + match[0].length;
  }
  parts.push(template.slice(last));
  return (image) => {
    let out = '';
    for (const part of parts) out += typeof part === 'string' ? part : part(image);
    return out.trim() || image.name;
  };
}

const accessRank: Readonly<Record<Access, number>> = { private: 0, shared: 1, public: 2 };

/**
 * The cloud's access level for an image: the policy's choice when the cloud has it, else the
 * most private level the cloud has that is no wider. Undefined when every level the cloud offers
 * is wider: such an image is not copied there (never widened).
 */
export function mapAccess(access: Access, policy: SyncPolicy, capabilities: DriverCapabilities): Access | undefined {
  const wanted = policy.visibility[access];
  if (capabilities.access.includes(wanted)) return wanted;
  for (const fallback of ['private', 'shared', 'public'] as const) {
    if (accessRank[fallback] <= accessRank[wanted] && capabilities.access.includes(fallback)) return fallback;
  }
  return undefined;
}

/** Formats a conversion may produce, best first, when the cloud does not take the image's own. */
const conversionPreference: readonly DiskFormat[] = ['qcow2', 'raw', 'vmdk', 'vhd', 'vhdx', 'vdi'];

export function targetFormat(
  image: Image,
  policy: SyncPolicy,
  capabilities: DriverCapabilities,
): Pick<DesiredImage, 'diskFormat' | 'convertFrom'> {
  const source = image.diskFormat;
  if (policy.diskFormat !== 'auto') {
    return {
      diskFormat: policy.diskFormat,
      convertFrom: source !== undefined && source !== policy.diskFormat ? source : undefined,
    };
  }
  if (source === undefined) return { diskFormat: undefined, convertFrom: undefined };
  if (capabilities.diskFormats.includes(source)) return { diskFormat: source, convertFrom: undefined };
  const to = conversionPreference.find((f) => capabilities.diskFormats.includes(f));
  return { diskFormat: to ?? source, convertFrom: to ? source : undefined };
}

/** What the cloud should hold for an image; undefined when the cloud could only hold it more widely visible. */
export function desiredFor(
  image: Image,
  policy: SyncPolicy,
  capabilities: DriverCapabilities,
): DesiredImage | undefined {
  const access = mapAccess(image.access, policy, capabilities);
  if (access === undefined) return undefined;
  return {
    image: { ...image, name: renderName(policy.naming, image), access, members: [] },
    ...targetFormat(image, policy, capabilities),
  };
}
