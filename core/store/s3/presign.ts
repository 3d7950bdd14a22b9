import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3ConnectionOptions } from '../../wire/s3/client.js';
import { canonicalResource, presignS3UrlV2 } from '../../wire/s3/sigv2.js';
import { rfc3986 } from '../../wire/ec2/sigv2.js';

/**
 * Presigned GET URLs for an object: the SDK's SigV4 presigner, or S3's query-string V2 over the
 * URL the SDK would address (path style with an endpoint, `bucket.host` otherwise).
 */
export async function presignedUrl(
  client: S3Client,
  connection: S3ConnectionOptions,
  bucket: string,
  key: string,
  expiresInSeconds: number,
): Promise<string> {
  if (connection.signatureVersion !== 2)
    return getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: expiresInSeconds });
  const encodedKey = key.split('/').map(rfc3986).join('/');
  const base = new URL(connection.endpoint ?? awsEndpoint(connection.region));
  const basePath = base.pathname.replace(/\/+$/, '');
  const url = new URL(base.origin);
  let resource: string;
  if (connection.forcePathStyle) {
    url.pathname = `${basePath}/${bucket}/${encodedKey}`;
    resource = canonicalResource(url.pathname);
  } else {
    url.hostname = `${bucket}.${base.hostname}`;
    url.pathname = `${basePath}/${encodedKey}`;
    resource = canonicalResource(url.pathname, {}, bucket);
  }
  return presignS3UrlV2(url, resource, connection, new Date(Date.now() + expiresInSeconds * 1000));
}

function awsEndpoint(region: string): string {
  return region === 'us-east-1' ? 'https://s3.amazonaws.com' : `https://s3.${region}.amazonaws.com`;
}
