import type { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsCommand,
  PutObjectCommand,
  type ObjectCannedACL,
  type S3Client,
} from '@aws-sdk/client-s3';
import { z } from 'zod';
import { VisorError } from '../../core/errors.js';
import type { Logger } from '../../core/logging/logger.js';
import { s3Error } from '../../core/wire/s3/client.js';
import { getObjectOutput, normalizeEtag, parseOutput, putObjectOutput } from '../../core/wire/s3/schema.js';
import type { BundleAcl } from './schema.js';

/**
 * The bundle's side in Walrus / the Object Storage Gateway (any S3 service): parts and manifest
 * as plain objects in one bucket, through the shared S3 wire code (core/wire/s3: createS3Client,
 * s3Error). Listing uses ListObjects (v1, marker paging): Walrus and Cumulus predate ListObjectsV2.
 */

export interface StoredObject {
  size: number;
  /** Unquoted, lower-case: the MD5 of the bytes for a single PutObject. */
  etag: string;
}

const listOutput = z.object({
  Contents: z
    .array(z.object({ Key: z.string().min(1), Size: z.number().int().nonnegative(), ETag: z.string().min(1) }))
    .optional(),
  IsTruncated: z.boolean().optional(),
  NextMarker: z.string().optional(),
});

export interface WalrusOptions {
  client: S3Client;
  bucket: string;
  acl: BundleAcl;
  /** Create the bucket on the first upload when it is missing (what euca-upload-bundle does). */
  createBucket: boolean;
  /** The region to create the bucket in; omitted for non-AWS services. */
  locationConstraint?: string | undefined;
  logger: Logger;
}

export class WalrusBundles {
  readonly bucket: string;
  readonly #o: WalrusOptions;
  #bucketChecked: Promise<void> | undefined;

  constructor(options: WalrusOptions) {
    this.#o = options;
    this.bucket = options.bucket;
  }

  /** Checks (once) that the bucket exists, creating it when allowed. */
  ensureBucket(signal?: AbortSignal): Promise<void> {
    this.#bucketChecked ??= this.#ensureBucket(signal).catch((error: unknown) => {
      this.#bucketChecked = undefined;
      throw error;
    });
    return this.#bucketChecked;
  }

  async #ensureBucket(signal?: AbortSignal): Promise<void> {
    const { client, bucket } = this.#o;
    try {
      await client.send(new HeadBucketCommand({ Bucket: bucket }), signal ? { abortSignal: signal } : {});
      return;
    } catch (error) {
      const e = s3Error(error, `walrus: HeadBucket ${bucket}`);
      if (e.kind !== 'notFound') throw e;
      if (!this.#o.createBucket)
        throw new VisorError('config', `walrus: bucket ${bucket} does not exist (create it, or set createBucket)`);
    }
    try {
      const constraint = this.#o.locationConstraint;
      await client.send(
        new CreateBucketCommand({
          Bucket: bucket,
          ...(constraint !== undefined
            ? { CreateBucketConfiguration: { LocationConstraint: constraint as never } }
            : {}),
        }),
        signal ? { abortSignal: signal } : {},
      );
      this.#o.logger.info('walrus: bundle bucket created', { bucket });
    } catch (error) {
      const e = s3Error(error, `walrus: CreateBucket ${bucket}`);
      if (e.kind !== 'conflict') throw e; // created meanwhile by someone else: fine
    }
  }

  /** Every object under `prefix`, with size and ETag. */
  async list(prefix: string, signal?: AbortSignal): Promise<Map<string, StoredObject>> {
    const { client, bucket } = this.#o;
    const out = new Map<string, StoredObject>();
    let marker: string | undefined;
    for (let page = 0; page < 100_000; page++) {
      let raw: unknown;
      try {
        raw = await client.send(
          new ListObjectsCommand({
            Bucket: bucket,
            Prefix: prefix,
            ...(marker !== undefined ? { Marker: marker } : {}),
          }),
          signal ? { abortSignal: signal } : {},
        );
      } catch (error) {
        throw s3Error(error, `walrus: ListObjects ${bucket}/${prefix}`);
      }
      const output = parseOutput(listOutput, raw, `walrus: ListObjects ${bucket}/${prefix}`);
      const contents = output.Contents ?? [];
      for (const object of contents) out.set(object.Key, { size: object.Size, etag: normalizeEtag(object.ETag) });
      if (!output.IsTruncated) return out;
      const next = output.NextMarker ?? contents.at(-1)?.Key;
      if (next === undefined || next === marker)
        throw new VisorError(
          'invalidResponse',
          `walrus: ListObjects ${bucket}/${prefix} is truncated but gives no marker to go on`,
        );
      marker = next;
    }
    throw new VisorError('invalidResponse', `walrus: ListObjects ${bucket}/${prefix} never ended`);
  }

  /** One PutObject with Content-MD5; the returned ETag must be that MD5. Returns it. */
  async put(
    key: string,
    body: Buffer,
    md5Hex: string,
    signal?: AbortSignal,
    contentType = 'application/octet-stream',
  ): Promise<string> {
    const { client, bucket, acl } = this.#o;
    const context = `walrus: PutObject ${bucket}/${key}`;
    let raw: unknown;
    try {
      raw = await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          ContentMD5: Buffer.from(md5Hex, 'hex').toString('base64'),
          ContentType: contentType,
          ...(acl !== 'none' ? { ACL: acl as ObjectCannedACL } : {}),
        }),
        signal ? { abortSignal: signal } : {},
      );
    } catch (error) {
      throw s3Error(error, context);
    }
    const output = parseOutput(putObjectOutput, raw, context);
    if (output.ETag === undefined) throw new VisorError('invalidResponse', `${context}: no ETag in the response`);
    const etag = normalizeEtag(output.ETag);
    if (etag !== md5Hex)
      throw new VisorError('integrity', `${context}: stored with ETag ${etag}, the bytes sent have MD5 ${md5Hex}`, {
        details: { key, etag, md5: md5Hex },
      });
    return etag;
  }

  async get(key: string, signal?: AbortSignal, bucket = this.#o.bucket): Promise<{ stream: Readable; size: number }> {
    const context = `walrus: GetObject ${bucket}/${key}`;
    try {
      const raw = await this.#o.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key }),
        signal ? { abortSignal: signal } : {},
      );
      const output = parseOutput(getObjectOutput, raw, context);
      return { stream: output.Body, size: output.ContentLength };
    } catch (error) {
      throw s3Error(error, context);
    }
  }

  /** A small object (the manifest) as text; refuses one larger than `maxBytes`. */
  async getText(key: string, maxBytes: number, signal?: AbortSignal, bucket = this.#o.bucket): Promise<string> {
    const { stream, size } = await this.get(key, signal, bucket);
    if (size > maxBytes) {
      stream.destroy();
      throw new VisorError(
        'invalidResponse',
        `walrus: ${bucket}/${key} is ${size} bytes, more than a manifest can be (${maxBytes})`,
      );
    }
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of stream) chunks.push(chunk as Buffer);
    } catch (error) {
      throw s3Error(error, `walrus: reading ${bucket}/${key}`);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** Deletes keys (idempotent), a few at a time; returns the errors instead of stopping at the first. */
  async delete(keys: readonly string[], concurrency = 4): Promise<VisorError[]> {
    const { client, bucket } = this.#o;
    const errors: VisorError[] = [];
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++]!;
        try {
          await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
        } catch (error) {
          const e = s3Error(error, `walrus: DeleteObject ${bucket}/${key}`);
          if (e.kind !== 'notFound') errors.push(e);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, worker));
    return errors;
  }

  close(): void {
    this.#o.client.destroy();
  }
}

/** `bucket/key` of an ImageLocation; undefined when it is not of that form. */
export function splitLocation(location: string): { bucket: string; key: string } | undefined {
  const slash = location.indexOf('/');
  if (slash <= 0 || slash === location.length - 1) return undefined;
  return { bucket: location.slice(0, slash), key: location.slice(slash + 1) };
}
