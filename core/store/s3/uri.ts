import { randomBytes } from 'node:crypto';
import { VisorError } from '../../errors.js';

/**
 * Object names and `s3://<bucket>/<key>` URIs. Pure functions: the store decides every key it
 * writes, and a URI handed back to it must name one of those keys, in its bucket, under its
 * prefix — never some other object the credentials happen to reach.
 */

/** `<object key>.<suffix>`: what the store names its objects (after the prefix). */
const objectNamePattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}\.[a-z0-9]{1,32}$/;

/** A fresh name for `key`: a re-upload never overwrites the object the catalog points at. */
export function newObjectName(key: string): string {
  return `${key}.${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

export function objectUri(bucket: string, objectKey: string): string {
  return `s3://${bucket}/${objectKey}`;
}

/** The object key a URI names; invalidInput for anything outside `bucket` + `prefix`. */
export function objectKeyOf(uri: string, bucket: string, prefix: string): string {
  const head = `s3://${bucket}/`;
  if (!uri.startsWith(head))
    throw new VisorError('invalidInput', `not a URI of the s3 store in bucket ${bucket}: ${uri}`);
  const key = uri.slice(head.length);
  if (!key.startsWith(prefix) || !objectNamePattern.test(key.slice(prefix.length))) {
    throw new VisorError('invalidInput', `URI ${uri} is outside the s3 store at s3://${bucket}/${prefix}`);
  }
  return key;
}
