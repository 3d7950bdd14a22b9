import { z } from 'zod';
import { VisorError } from '../../errors.js';

/** Media types of the OCI image and distribution specs (and Docker's, which registries still serve). */
export const mediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  /** The config of an artifact with nothing to configure: the two bytes `{}` (ORAS since 1.0). */
  empty: 'application/vnd.oci.empty.v1+json',
  /** What EGI's images carry: one layer of this type. */
  qemuDisk: 'application/x-qemu-disk',
} as const;

export const manifestMediaTypes: readonly string[] = [mediaTypes.ociManifest, mediaTypes.dockerManifest];
export const indexMediaTypes: readonly string[] = [mediaTypes.ociIndex, mediaTypes.dockerList];

/** The empty config blob: its bytes, digest and size are fixed by the image spec. */
export const emptyConfig = {
  bytes: Buffer.from('{}'),
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
} as const;

/** sha256 only: the one algorithm every registry and the specs' conformance tests agree on. */
export const digestPattern = /^sha256:[0-9a-f]{64}$/;
/** A tag, as the distribution spec allows it. */
export const tagPattern = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** A repository name: path components of lowercase alphanumerics and separators. */
export const repositoryPattern = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

const annotations = z.record(z.string(), z.string());

export const descriptorSchema = z.object({
  mediaType: z.string().min(1).max(255),
  digest: z.string().regex(digestPattern, 'a sha256 digest (sha256:<64 hex>)'),
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  urls: z.array(z.string()).optional(),
  annotations: annotations.optional(),
  artifactType: z.string().optional(),
  platform: z
    .object({ architecture: z.string(), os: z.string(), variant: z.string().optional() })
    .passthrough()
    .optional(),
});
export type Descriptor = z.infer<typeof descriptorSchema>;

export const imageManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema).max(1000),
  subject: descriptorSchema.optional(),
  annotations: annotations.optional(),
});
export type ImageManifest = z.infer<typeof imageManifestSchema>;

export const indexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  manifests: z.array(descriptorSchema).max(10_000),
  annotations: annotations.optional(),
});
export type ImageIndex = z.infer<typeof indexSchema>;

export const tagListSchema = z.object({
  name: z.string(),
  tags: z.array(z.string()).nullable().optional(),
});

/** A registry's JSON, checked against its schema; `what` names it in the error. */
export function parseJson<T>(schema: z.ZodType<T>, bytes: Buffer, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new VisorError('invalidResponse', `${what} is not JSON`);
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.join('.') || '(top)';
    throw new VisorError('invalidResponse', `${what} is not valid: ${where}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data;
}
