import { createDecipheriv, createHash } from 'node:crypto';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract } from 'tar-stream';
import { isVisorError, VisorError } from '../../core/errors.js';
import { checkRange } from '../../core/store/keys.js';
import type { ByteRange } from '../../core/store/port.js';
import { rsaDecryptHex, type BundleIdentity } from './driver-bundle-crypto.js';
import type { Manifest } from './mapper-manifest.js';
import type { WalrusBundles } from './client-walrus.js';

/**
 * Unbundling, streamed (euca-download-and-unbundle): parts in manifest order -> SHA1 check per
 * part -> AES-128-CBC decrypt (key and IV from user_encrypted_*, decrypted with the user's
 * private key) -> gunzip -> SHA1 of the tar stream checked against the manifest -> the one
 * tar member. The output ends only after every check passed; a mismatch destroys it with an
 * `integrity` error instead, so a consumer never takes a corrupt image for a complete one.
 */

export interface UnbundleRequest {
  walrus: WalrusBundles;
  bucket: string;
  /** Key of the manifest; parts are its siblings. */
  manifestKey: string;
  manifest: Manifest;
  identity: BundleIdentity;
  range?: ByteRange | undefined;
  signal?: AbortSignal | undefined;
}

export function openUnbundled(request: UnbundleRequest): { stream: Readable; size: number } {
  const { manifest, identity } = request;
  const key = rsaDecryptHex(identity.userPrivateKey, manifest.image.user_encrypted_key['#text'], 'user_encrypted_key');
  const iv = rsaDecryptHex(identity.userPrivateKey, manifest.image.user_encrypted_iv, 'user_encrypted_iv');
  const size = manifest.image.size;
  const { start, end } = request.range ? checkRange(request.range, size) : { start: 0, end: size - 1 };
  const folder = request.manifestKey.slice(0, request.manifestKey.lastIndexOf('/') + 1);
  const output = new PassThrough();

  async function* parts(): AsyncGenerator<Buffer> {
    for (const part of manifest.image.parts.part) {
      const sha1 = createHash('sha1');
      const { stream } = await request.walrus.get(folder + part.filename, request.signal, request.bucket);
      for await (const chunk of stream) {
        sha1.update(chunk as Buffer);
        yield chunk as Buffer;
      }
      const actual = sha1.digest('hex');
      if (actual !== part.digest['#text']) {
        throw new VisorError(
          'integrity',
          `eucalyptus: bundle part ${part.filename} has SHA1 ${actual}, the manifest says ${part.digest['#text']}`,
        );
      }
    }
  }

  const tarSha1 = createHash('sha1');
  const verifyTar = new Transform({
    transform(chunk: Buffer, _e, callback: TransformCallback) {
      tarSha1.update(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      const actual = tarSha1.digest('hex');
      const expected = manifest.image.digest['#text'];
      callback(
        actual === expected
          ? null
          : new VisorError(
              'integrity',
              `eucalyptus: the unbundled tar stream has SHA1 ${actual}, the manifest says ${expected}`,
            ),
      );
    },
  });
  const extract = tarExtract();
  let members = 0;
  let written = 0;
  extract.on('entry', (header, entry, next) => {
    members++;
    entry.on('error', () => undefined); // destroyed with the extract's error, reported by the pipeline
    if (members > 1 || header.type !== 'file') {
      entry.resume();
      entry.on('end', () =>
        next(
          members > 1
            ? new VisorError('invalidResponse', 'eucalyptus: the bundle holds more than one file')
            : undefined,
        ),
      );
      return;
    }
    if (header.size !== size) {
      entry.resume();
      next(
        new VisorError('integrity', `eucalyptus: the bundled file is ${header.size} bytes, the manifest says ${size}`),
      );
      return;
    }
    entry.on('data', (data: unknown) => {
      const chunk = data as Buffer;
      const from = Math.max(start - written, 0);
      const to = Math.min(end + 1 - written, chunk.length);
      written += chunk.length;
      if (from < to && !output.write(chunk.subarray(from, to))) {
        entry.pause();
        output.once('drain', () => entry.resume());
      }
    });
    entry.on('end', () => next());
  });

  const gunzip = createGunzip();
  // tar-stream's streams (streamx) re-emit the error they are destroyed with after the pipeline
  // has settled and stopped listening; the pipeline already reports the first error.
  extract.on('error', () => undefined);
  pipeline(
    Readable.from(parts()),
    createDecipheriv('aes-128-cbc', Buffer.from(key, 'hex'), Buffer.from(iv, 'hex')),
    gunzip,
    verifyTar,
    extract,
    request.signal ? { signal: request.signal } : {},
  )
    .then(() => {
      if (members === 0) throw new VisorError('integrity', 'eucalyptus: the bundle holds no file');
      output.end();
    })
    .catch((error: unknown) => {
      output.destroy(
        isVisorError(error)
          ? error
          : new VisorError(
              request.signal?.aborted ? 'unavailable' : 'integrity',
              `eucalyptus: unbundling ${request.manifestKey} failed: ${(error as Error).message}`,
              { cause: error },
            ),
      );
    });
  return { stream: output, size: end - start + 1 };
}
