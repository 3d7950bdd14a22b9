import { describe, expect, it } from 'vitest';
import {
  canonicalAmzHeaders,
  canonicalResource,
  presignS3UrlV2,
  s3SignatureV2,
  s3StringToSign,
  signS3RequestV2,
  virtualHostBucket,
} from '../../core/wire/s3/sigv2.js';

// The worked examples of S3's "Signing and authenticating REST requests" (Signature Version 2),
// with the documentation's example credentials and bucket.
const accessKeyId = 'AKIAIOSFODNN7EXAMPLE';
const secretAccessKey = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

describe("S3 Signature Version 2: AWS's documented examples", () => {
  it('object GET (virtual-hosted johnsmith.s3.amazonaws.com)', () => {
    const text = s3StringToSign({
      method: 'GET',
      date: 'Tue, 27 Mar 2007 19:36:42 +0000',
      resource: canonicalResource('/photos/puppy.jpg', {}, 'johnsmith'),
    });
    expect(text).toBe('GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg');
    expect(s3SignatureV2(secretAccessKey, text)).toBe('bWq2s1WEIj+Ydj0vQ697zp+IXMU=');
  });

  it('object PUT with a Content-Type', () => {
    const text = s3StringToSign({
      method: 'PUT',
      contentType: 'image/jpeg',
      date: 'Tue, 27 Mar 2007 21:15:45 +0000',
      resource: '/johnsmith/photos/puppy.jpg',
    });
    expect(s3SignatureV2(secretAccessKey, text)).toBe('MyyxeRY7whkBe+bq8fHCL/2kKUg=');
  });

  it('list: query parameters that are not sub-resources are not signed', () => {
    const resource = canonicalResource('/', { prefix: 'photos', 'max-keys': '50', marker: 'puppy' }, 'johnsmith');
    expect(resource).toBe('/johnsmith/');
    const text = s3StringToSign({ method: 'GET', date: 'Tue, 27 Mar 2007 19:42:41 +0000', resource });
    expect(s3SignatureV2(secretAccessKey, text)).toBe('htDYFYduRNen8P9ZfE/s9SuKy0U=');
  });

  it('fetch ACL: a sub-resource without a value', () => {
    const resource = canonicalResource('/', { acl: null }, 'johnsmith');
    expect(resource).toBe('/johnsmith/?acl');
    const text = s3StringToSign({ method: 'GET', date: 'Tue, 27 Mar 2007 19:44:46 +0000', resource });
    expect(s3SignatureV2(secretAccessKey, text)).toBe('c2WLPFtWHVgbEmeEG93a4cG37dM=');
  });

  it('path-style DELETE (the example sends x-amz-date and signs its value on the Date line)', () => {
    const text = s3StringToSign({
      method: 'DELETE',
      date: 'Tue, 27 Mar 2007 21:20:26 +0000',
      resource: canonicalResource('/johnsmith/photos/puppy.jpg'),
    });
    expect(text).toBe('DELETE\n\n\nTue, 27 Mar 2007 21:20:26 +0000\n/johnsmith/photos/puppy.jpg');
    expect(s3SignatureV2(secretAccessKey, text)).toBe('lx3byBScXR6KzyMaifNkardMwNk=');
  });

  it('upload with Content-MD5 and x-amz-* headers (CNAME bucket, folded metadata)', () => {
    const headers = {
      'x-amz-acl': 'public-read',
      'X-Amz-Meta-ReviewedBy': 'joe@johnsmith.net,jane@johnsmith.net',
      'X-Amz-Meta-FileChecksum': '0x02661779',
      'X-Amz-Meta-ChecksumAlgorithm': 'crc32',
    };
    expect(canonicalAmzHeaders(headers)).toBe(
      'x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\n' +
        'x-amz-meta-reviewedby:joe@johnsmith.net,jane@johnsmith.net\n',
    );
    const text = s3StringToSign({
      method: 'PUT',
      contentMd5: '4gJE4saaMU4BqNR0kLY+lw==',
      contentType: 'application/x-download',
      date: 'Tue, 27 Mar 2007 21:06:08 +0000',
      headers,
      resource: '/static.johnsmith.net/db-backup.dat.gz',
    });
    expect(s3SignatureV2(secretAccessKey, text)).toBe('ilyl83RwaSoYIEdixDQcA4OnAnc=');
  });

  it('query-string authentication (a presigned URL)', () => {
    const url = presignS3UrlV2(
      new URL('http://johnsmith.s3.amazonaws.com/photos/puppy.jpg'),
      '/johnsmith/photos/puppy.jpg',
      { accessKeyId, secretAccessKey },
      new Date(1175139620 * 1000),
    );
    const query = new URL(url).searchParams;
    expect(query.get('AWSAccessKeyId')).toBe(accessKeyId);
    expect(query.get('Expires')).toBe('1175139620');
    expect(query.get('Signature')).toBe('NpgCjnDzrM+WFzoENXmpNDUsSn8=');
    expect(url).toContain('Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D');
  });
});

describe('S3 Signature Version 2: canonical parts', () => {
  it('signs the multipart and delete sub-resources, sorted, with decoded values, and nothing else', () => {
    expect(canonicalResource('/b/k', { uploads: '', 'x-id': 'CreateMultipartUpload' })).toBe('/b/k?uploads');
    expect(canonicalResource('/b/k', { uploadId: 'a/b+c', partNumber: '3', 'x-id': 'UploadPart' })).toBe(
      '/b/k?partNumber=3&uploadId=a/b+c',
    );
    expect(canonicalResource('/b', { delete: '' })).toBe('/b?delete');
    expect(canonicalResource('/b/k', { 'response-content-type': 'text/plain; a=b', versionId: 'v1' })).toBe(
      '/b/k?response-content-type=text/plain; a=b&versionId=v1',
    );
    expect(canonicalResource('')).toBe('/');
  });

  it('signs an SDK request in place: SigV4 headers dropped, Date and Authorization set', () => {
    const request = {
      method: 'PUT',
      hostname: '127.0.0.1',
      path: '/bucket/images/a.b',
      query: { partNumber: '1', uploadId: 'U1' },
      headers: {
        'Content-MD5': 'XrY7u+Ae7tCTyyK7j1rNww==',
        'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
        'x-amz-date': '20070327T193642Z',
        'x-amz-checksum-crc32': 'AAAAAA==',
        authorization: 'AWS4-HMAC-SHA256 Credential=...',
        'x-amz-meta-owner': ' visor ',
      },
    };
    const now = new Date(Date.UTC(2007, 2, 27, 19, 36, 42));
    signS3RequestV2(request, { accessKeyId, secretAccessKey, sessionToken: 'TOKEN' }, { now });
    const expected = s3SignatureV2(
      secretAccessKey,
      'PUT\nXrY7u+Ae7tCTyyK7j1rNww==\n\nTue, 27 Mar 2007 19:36:42 GMT\nx-amz-meta-owner:visor\n' +
        'x-amz-security-token:TOKEN\n/bucket/images/a.b?partNumber=1&uploadId=U1',
    );
    expect(request.headers).toEqual({
      'Content-MD5': 'XrY7u+Ae7tCTyyK7j1rNww==',
      'x-amz-meta-owner': ' visor ',
      'x-amz-security-token': 'TOKEN',
      date: 'Tue, 27 Mar 2007 19:36:42 GMT',
      authorization: `AWS ${accessKeyId}:${expected}`,
    });
  });

  it('finds the bucket of a virtual-hosted request', () => {
    expect(virtualHostBucket('johnsmith.s3.amazonaws.com', undefined)).toBe('johnsmith');
    expect(virtualHostBucket('my.bucket.s3.eu-west-1.amazonaws.com', undefined)).toBe('my.bucket');
    expect(virtualHostBucket('s3.amazonaws.com', undefined)).toBeUndefined();
    expect(virtualHostBucket('images.walrus.example.org', 'walrus.example.org')).toBe('images');
    expect(virtualHostBucket('walrus.example.org', 'walrus.example.org')).toBeUndefined();
  });
});
