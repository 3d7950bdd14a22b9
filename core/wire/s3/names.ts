import { z } from 'zod';

/**
 * Names on S3-family services that visor's config takes: buckets and key prefixes. Shared by the
 * s3 store and the adapters that keep images in S3 (Eucalyptus's bundles, Nimbus's repository).
 */

/** Bucket names: DNS-style, plus the upper case and `_` of legacy buckets (Cumulus's `Repo`). */
export const bucketPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/;

/** Why `prefix` is not usable as a key prefix, or undefined when it is. */
export function prefixProblem(prefix: string): string | undefined {
  if (prefix === '') return undefined;
  if (!/^[A-Za-z0-9_./-]{1,512}$/.test(prefix))
    return 'may only use letters, digits, "_", ".", "-" and "/" (at most 512)';
  if (prefix.startsWith('/') || prefix.includes('//')) return 'must not start with "/" or contain "//"';
  if (prefix.split('/').some((segment) => segment === '.' || segment === '..'))
    return 'must not contain "." or ".." segments';
  return undefined;
}

/** The same check as a zod refinement, for options schemas (`.superRefine(refinePrefix)`). */
export function refinePrefix(prefix: string, ctx: z.RefinementCtx): void {
  const problem = prefixProblem(prefix);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
}

const mebibyte = 1024 * 1024;

/** Bytes per part of a multipart upload, within S3's own bounds (5 MiB to 5 GiB), as an option. */
export const partSizeOption = (defaultBytes: number) =>
  z
    .number()
    .int()
    .min(5 * mebibyte, 'must be at least 5 MiB (5242880), the smallest S3 part')
    .max(5 * 1024 * mebibyte, 'must be at most 5 GiB, the largest S3 part')
    .default(defaultBytes)
    .describe('bytes per part; smaller objects are one PutObject');
