import {
  constants,
  createHash,
  createHmac,
  createPrivateKey,
  privateDecrypt,
  publicEncrypt,
  sign,
  verify,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { VisorError } from '../../core/errors.js';

/**
 * The keys of a bundle (as euca2ools' bundle manifest writer and its bundle command mixins make them):
 * - AES-128-CBC key and IV, each written as 32 lower-case hex characters; the hex *text* (not
 *   the 16 bytes) is what gets RSA-encrypted, with PKCS#1 v1.5 padding, once for the cloud's
 *   certificate (ec2_encrypted_*) and once for the user's (user_encrypted_*);
 * - the manifest signature: RSA-SHA1 (PKCS#1 v1.5) with the user's private key, hex.
 */

export interface BundleIdentity {
  /** The user's certificate (user_encrypted_* are for it; the cloud verifies signatures with it). */
  userCertificate: X509Certificate;
  userPrivateKey: KeyObject;
  /** The cloud's certificate (ec2_encrypted_*): the CLC / NC decrypt the bundle with its key. */
  cloudCertificate: X509Certificate;
}

function certificate(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new VisorError('config', `eucalyptus: ${what} is not a PEM X.509 certificate (${(error as Error).message})`);
  }
}

/** Loads and cross-checks the three PEMs: the private key must belong to the user certificate. */
export function loadBundleIdentity(pems: {
  userCertificate: string;
  userPrivateKey: string;
  cloudCertificate: string;
}): BundleIdentity {
  const userCertificate = certificate(pems.userCertificate, 'userCertificate');
  const cloudCertificate = certificate(pems.cloudCertificate, 'cloudCertificate');
  let userPrivateKey: KeyObject;
  try {
    userPrivateKey = createPrivateKey(pems.userPrivateKey);
  } catch (error) {
    throw new VisorError('config', `eucalyptus: userPrivateKey is not a PEM private key (${(error as Error).message})`);
  }
  for (const [what, key] of [
    ['userPrivateKey', userPrivateKey],
    ['userCertificate', userCertificate.publicKey],
    ['cloudCertificate', cloudCertificate.publicKey],
  ] as const) {
    if (key.asymmetricKeyType !== 'rsa')
      throw new VisorError('config', `eucalyptus: ${what} must be an RSA key (bundles use RSA PKCS#1 v1.5)`);
  }
  if (!userCertificate.checkPrivateKey(userPrivateKey))
    throw new VisorError('config', 'eucalyptus: userPrivateKey does not belong to userCertificate');
  return { userCertificate, userPrivateKey, cloudCertificate };
}

/** The bundling format's version: part of the key derivation, so a format change never reuses a key. */
const derivationLabel = 'visor-eucalyptus-bundle-v1';

/**
 * AES key and IV for a bundle, derived (HMAC-SHA256) from a secret only the user holds (their
 * private key) and from what identifies the plaintext: the same content bundled again gives the
 * same ciphertext, which is what lets a retried create skip the parts already in Walrus. Any
 * change of the plaintext (other content, file name, gzip level) gives another key and IV.
 */
export function deriveBundleKey(privateKey: KeyObject, plaintextId: readonly string[]): { key: string; iv: string } {
  const secret = createHash('sha256')
    .update(privateKey.export({ type: 'pkcs8', format: 'der' }))
    .digest();
  const okm = createHmac('sha256', secret)
    .update([derivationLabel, ...plaintextId].join('\0'))
    .digest('hex');
  return { key: okm.slice(0, 32), iv: okm.slice(32, 64) };
}

/** RSA PKCS#1 v1.5 encryption of a short text, hex-encoded, as `openssl rsautl -encrypt -pkcs`. */
export function rsaEncryptHex(certificateOrKey: X509Certificate | KeyObject, text: string): string {
  const key = certificateOrKey instanceof X509Certificate ? certificateOrKey.publicKey : certificateOrKey;
  return publicEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(text, 'ascii')).toString('hex');
}

/**
 * RSA PKCS#1 v1.5 decryption of a manifest field. Node 20 refuses PKCS#1 v1.5 in
 * privateDecrypt (CVE-2023-46809, the Marvin timing oracle); the raw RSA operation is done by
 * OpenSSL and only the padding is removed here. There is no oracle to fear: the result is
 * checked (32 hex digits) and a failure says nothing beyond "cannot decrypt".
 */
export function rsaDecryptHex(privateKey: KeyObject, hex: string, what: string): string {
  const fail = () =>
    new VisorError(
      'integrity',
      `eucalyptus: the manifest's ${what} cannot be decrypted with this private key (bundled for another certificate?)`,
    );
  let block: Buffer;
  try {
    block = privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, Buffer.from(hex, 'hex'));
  } catch {
    throw fail();
  }
  // EME-PKCS1-v1_5: 0x00 0x02 PS (>= 8 non-zero bytes) 0x00 M
  if (block[0] !== 0x00 || block[1] !== 0x02) throw fail();
  const separator = block.indexOf(0x00, 2);
  if (separator < 10) throw fail();
  const text = block.subarray(separator + 1).toString('ascii');
  if (!/^[0-9a-f]{32}$/i.test(text)) throw fail();
  return text.toLowerCase();
}

/** Hex RSA-SHA1 signature of the manifest's signed portion. */
export function signManifestText(privateKey: KeyObject, text: string): string {
  return sign('sha1', Buffer.from(text, 'utf8'), { key: privateKey, padding: constants.RSA_PKCS1_PADDING }).toString(
    'hex',
  );
}

export function verifyManifestText(
  certificateOrKey: X509Certificate | KeyObject,
  text: string,
  signatureHex: string,
): boolean {
  const key = certificateOrKey instanceof X509Certificate ? certificateOrKey.publicKey : certificateOrKey;
  return verify(
    'sha1',
    Buffer.from(text, 'utf8'),
    { key, padding: constants.RSA_PKCS1_PADDING },
    Buffer.from(signatureHex, 'hex'),
  );
}
