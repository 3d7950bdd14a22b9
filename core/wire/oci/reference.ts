import { VisorError } from '../../errors.js';
import { digestPattern, repositoryPattern, tagPattern } from './media.js';

/** `oci://HOST[:PORT]/REPO[:TAG|@DIGEST]`, taken apart. */
export interface OciReference {
  /** host[:port], as the registry is reached. */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

/** Parses an `oci://` reference; a tag or digest is required or refused as `reference` says. */
export function parseOciReference(
  text: string,
  reference: 'required' | 'optional' | 'none' = 'optional',
): OciReference {
  const match = /^oci:\/\/([^/\s]+)\/([^\s]+)$/.exec(text.trim());
  if (!match) throw new VisorError('invalidInput', `"${text}" is not an OCI reference (oci://HOST/REPOSITORY[:TAG])`);
  const registry = match[1]!;
  let rest = match[2]!;
  if (registry.includes('@')) {
    throw new VisorError('invalidInput', `"${registry}": credentials do not belong in the reference; use the config`);
  }
  let digest: string | undefined;
  let tag: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestPattern.test(digest)) throw new VisorError('invalidInput', `"${digest}" is not a sha256 digest`);
  }
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagPattern.test(tag)) throw new VisorError('invalidInput', `"${tag}" is not a valid tag`);
  }
  if (!repositoryPattern.test(rest) || rest.length > 255) {
    throw new VisorError('invalidInput', `"${rest}" is not a valid repository name (lowercase, a-z 0-9 . _ - /)`);
  }
  const hasReference = tag !== undefined || digest !== undefined;
  if (reference === 'required' && !hasReference) {
    throw new VisorError('invalidInput', `"${text}" names no tag (oci://HOST/REPOSITORY:TAG)`);
  }
  if (reference === 'none' && hasReference) {
    throw new VisorError('invalidInput', `"${text}": name the repository only (oci://HOST/REPOSITORY)`);
  }
  return {
    registry,
    repository: rest,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}
