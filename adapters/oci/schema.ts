import { VisorError } from '../../core/errors.js';
import type { ManifestResult } from '../../core/wire/oci/client.js';
import { type Descriptor, imageManifestSchema, manifestMediaTypes, parseJson } from '../../core/wire/oci/media.js';

/** A manifest as the oci target reads it: checked, and whether it is a disk artifact visor can use. */
export interface ArtifactManifest {
  annotations: Record<string, string>;
  /** The one disk layer, when the manifest is an ORAS-style disk artifact; else undefined. */
  layer?: Descriptor;
  config?: Descriptor;
}

/**
 * Checks a manifest the registry answered: an image manifest of the spec's schema. A manifest
 * of another shape (an index, a container image) is not an error here — the tag may be someone
 * else's — but it has no `layer`, so it is listed without markers and never touched.
 */
export function parseArtifactManifest(result: ManifestResult, where: string): ArtifactManifest {
  if (!manifestMediaTypes.includes(result.mediaType)) return { annotations: {} };
  const manifest = parseJson(imageManifestSchema, result.bytes, `manifest ${where}`);
  const annotations = manifest.annotations ?? {};
  const layer = manifest.layers.length === 1 ? manifest.layers[0] : undefined;
  if (!layer) return { annotations, config: manifest.config };
  if (layer.size < 0 || !Number.isSafeInteger(layer.size)) {
    throw new VisorError('invalidResponse', `manifest ${where}: a layer size that is not a byte count`);
  }
  return { annotations, layer, config: manifest.config };
}
