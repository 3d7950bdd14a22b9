import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createS3Client } from '../../core/store/s3/client.js';
import { repoRoot } from '../support/cli.js';

/**
 * The real S3 peer of the tests: OpenStack Swift 2.30 with s3api (Debian's python3-swift) on
 * 127.0.0.1:18080, started by test/peers/s3/start-s3.sh (a copy of the shared recipe; see its
 * header). One peer for every test file and engineer: fixed folder, port and credentials, so
 * that the script, which is idempotent, only checks that it is up after the first call.
 */
export interface S3Peer {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export const s3PeerDir = '/tmp/visor-s3peer';
export const s3PeerPort = 18080;

const run = promisify(execFile);
const swiftInstalled = () => existsSync('/usr/lib/python3/dist-packages/swift/common/middleware/s3api/s3api.py');

/** Why the peer cannot run on this machine, or undefined when it can (or can be installed). */
async function cannotRun(): Promise<string | undefined> {
  if (swiftInstalled()) return undefined;
  if (!existsSync('/usr/bin/apt-get')) return 'the S3 peer needs Debian\'s python3-swift, and this machine has no apt-get';
  if (process.getuid?.() === 0) return undefined;
  const sudo = await run('sudo', ['-n', 'true']).then(
    () => true,
    () => false,
  );
  return sudo ? undefined : 'the S3 peer needs python3-swift (apt-get install python3-swift), and installing it needs root';
}

/**
 * Starts the peer, or finds it running. A skip reason only when it genuinely cannot run here;
 * any other failure to start is an error the test run must show.
 */
export async function startS3Peer(): Promise<S3Peer | { skip: string }> {
  const reason = await cannotRun();
  if (reason) return { skip: reason };
  const env: NodeJS.ProcessEnv = { ...process.env, S3PEER_PORT: String(s3PeerPort), S3PEER_ACCESS_KEY: 'test:tester', S3PEER_SECRET_KEY: 'testing', S3PEER_REGION: 'us-east-1', S3PEER_OBJECT_BACKEND: 'disk' };
  delete env['S3PEER_DELETE_MD5_SHIM'];
  delete env['S3PEER_NO_INSTALL'];
  const { stdout } = await run('bash', [join(repoRoot, 'test/peers/s3/start-s3.sh'), s3PeerDir], { env, timeout: 600_000, maxBuffer: 1024 * 1024 }).catch((error: { stderr?: string; message: string }) => {
    throw new Error(`the S3 peer did not start: ${error.stderr?.trim().split('\n').slice(-5).join(' | ') ?? error.message}`, { cause: error });
  });
  const info = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
  const need = (name: string): string => {
    const value = info[name];
    if (!value) throw new Error(`start-s3.sh printed no ${name}`);
    return value;
  };
  return { endpoint: need('S3_ENDPOINT'), accessKeyId: need('S3_ACCESS_KEY'), secretAccessKey: need('S3_SECRET_KEY'), region: need('S3_REGION') };
}

/** A client for the peer, with the project's settings (path style, no aws-chunked bodies). */
export function peerClient(peer: S3Peer): S3Client {
  return createS3Client({ ...peer, forcePathStyle: true });
}

/** A new, empty bucket for one test file: `visor-<label>-<random>`. */
export async function createTestBucket(peer: S3Peer, label: string): Promise<string> {
  const bucket = `visor-${label.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 30)}-${randomBytes(4).toString('hex')}`;
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
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }));
    for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

/** Multipart uploads started in `bucket` and neither completed nor aborted. */
export async function pendingUploads(client: S3Client, bucket: string): Promise<Array<{ key: string; uploadId: string }>> {
  const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (page.Uploads ?? []).map((u) => ({ key: u.Key ?? '', uploadId: u.UploadId ?? '' }));
}

/** Empties and removes a test bucket (DeleteObjects: exercises the Content-MD5 the client adds). */
export async function deleteTestBucket(peer: S3Peer, bucket: string): Promise<void> {
  const client = peerClient(peer);
  try {
    for (const upload of await pendingUploads(client, bucket)) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.key, UploadId: upload.uploadId }));
    }
    const keys = await listKeys(client, bucket);
    for (let i = 0; i < keys.length; i += 1000) {
      const out = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }));
      if (out.Errors?.length) throw new Error(`DeleteObjects in ${bucket}: ${out.Errors.map((e) => `${e.Key}: ${e.Code}`).join(', ')}`);
    }
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}
