import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createS3Client } from '../../core/wire/s3/client.js';
import type { S3Peer } from './s3-peer.js';

/** Buckets on the S3 peer (s3-peer.ts; tests get it with requirePeer('s3')), one per test file. */

export type { S3Peer } from './s3-peer.js';

/** A client for the peer, with the project's settings (path style, no aws-chunked bodies). */
export function peerClient(peer: S3Peer): S3Client {
  return createS3Client({ ...peer, forcePathStyle: true });
}

/** A new, empty bucket for one test file: `visor-<label>-<random>`. */
export async function createTestBucket(peer: S3Peer, label: string): Promise<string> {
  const bucket = `visor-${label
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 30)}-${randomBytes(4).toString('hex')}`;
  const client = peerClient(peer);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}

/** Every object key in `bucket` (all pages). */
export async function listKeys(client: S3Client, bucket: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }),
    );
    for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

/** Multipart uploads started in `bucket` and neither completed nor aborted. */
export async function pendingUploads(
  client: S3Client,
  bucket: string,
): Promise<Array<{ key: string; uploadId: string }>> {
  const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (page.Uploads ?? []).map((u) => ({ key: u.Key ?? '', uploadId: u.UploadId ?? '' }));
}

/** Empties and removes a test bucket (DeleteObjects: exercises the Content-MD5 the client adds). */
export async function deleteTestBucket(peer: S3Peer, bucket: string): Promise<void> {
  const client = peerClient(peer);
  try {
    for (const upload of await pendingUploads(client, bucket)) {
      await client.send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.key, UploadId: upload.uploadId }),
      );
    }
    const keys = await listKeys(client, bucket);
    for (let i = 0; i < keys.length; i += 1000) {
      const out = await client.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
        }),
      );
      if (out.Errors?.length)
        throw new Error(`DeleteObjects in ${bucket}: ${out.Errors.map((e) => `${e.Key}: ${e.Code}`).join(', ')}`);
    }
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}
