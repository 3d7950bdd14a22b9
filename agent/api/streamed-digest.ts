import type { IncomingMessage } from 'node:http';
import { CONTENT_HASH_HEADER, DECODED_LENGTH_HEADER, TRAILER_SIGNATURE_HEADER } from '../../core/auth/signing.js';
import { VisorError } from '../../core/errors.js';
import type { PutResult } from '../../core/store/port.js';

/**
 * The check of a streamed upload (STREAMING-SHA256-TRAILER): once the body has ended, its
 * trailers must carry the sha256 the client computed while sending and a signature over it
 * chained to the request's own; that sha256 must be the one the store computed (in the same
 * pass as the write: no second read). Runs before the image becomes available.
 */
export function trailerCheck(
  request: IncomingMessage,
  verify: (sha256: string, signature: string) => boolean,
): (stored: PutResult) => void {
  return (stored) => {
    const sha256 = request.trailers[CONTENT_HASH_HEADER];
    const signature = request.trailers[TRAILER_SIGNATURE_HEADER];
    if (!sha256 || !/^[0-9a-f]{64}$/.test(sha256) || !signature || !/^[0-9a-f]{64}$/.test(signature)) {
      throw new VisorError(
        'auth',
        `a streamed upload must end with the trailers ${CONTENT_HASH_HEADER} (the body's sha256) ` +
          `and ${TRAILER_SIGNATURE_HEADER}`,
      );
    }
    if (!verify(sha256, signature)) {
      throw new VisorError(
        'forbidden',
        `the ${TRAILER_SIGNATURE_HEADER} trailer does not match (the body's digest was altered, or the key is wrong)`,
      );
    }
    if (sha256 !== stored.checksums.sha256) {
      throw new VisorError(
        'integrity',
        `content does not match: sha256 is ${stored.checksums.sha256}, the signed trailer says ${sha256} ` +
          '(the body was altered in transit)',
      );
    }
  };
}

/** The signed length of a streamed body, when the client gave one. */
export function decodedLength(request: IncomingMessage): number | undefined {
  const value = request.headers[DECODED_LENGTH_HEADER];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d{1,16}$/.test(value))
    throw new VisorError('invalidInput', `${DECODED_LENGTH_HEADER} must be the body's length in bytes`);
  return Number(value);
}
