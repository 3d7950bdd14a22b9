import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VisorError } from '../errors.js';
import { sourceError } from './port.js';

/** Trust anchors: an IGTF-style folder of hashed CA files (`9da13359.0`), a PEM bundle, or both. */
export interface SmimeTrust {
  caPath?: string;
  caFile?: string;
  /** Check CRLs (`<hash>.r0` files in caPath): every CA of the chain must then have one. */
  crls?: boolean;
}

export interface VerifiedMessage {
  /** Exactly the content the verifier vouched for, MIME headers of the signed part removed. */
  content: Buffer;
  signer: X509Certificate;
}

const signedType = /content-type:\s*(multipart\/signed|application\/(x-)?pkcs7-mime)/i;

/** True when `message` is an S/MIME signed message (detached multipart/signed or opaque pkcs7-mime). */
export function looksSigned(message: Buffer): boolean {
  const head = message.subarray(0, 4096).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  return signedType.test(end < 0 ? head : head.slice(0, end));
}

/**
 * Verifies an S/MIME signed message with OpenSSL against the given trust anchors only (never
 * the system's CA store), and returns the content OpenSSL verified and the signer's certificate.
 * OpenSSL does the cryptography because it is what the grid's CA layout (hashed names, CRLs) is
 * made for; its refusals are mapped to typed reasons.
 */
export async function verifySmime(message: Buffer, trust: SmimeTrust, signal?: AbortSignal): Promise<VerifiedMessage> {
  if (!trust.caPath && !trust.caFile) throw new VisorError('config', 'S/MIME verification needs caPath or caFile');
  if (!looksSigned(message)) throw sourceError('unsigned', 'the list is not S/MIME signed (no multipart/signed or pkcs7-mime part)');
  const dir = await mkdtemp(join(tmpdir(), 'visor-smime-'));
  try {
    const input = join(dir, 'message');
    const signerFile = join(dir, 'signer.pem');
    const contentFile = join(dir, 'content');
    await writeFile(input, message, { mode: 0o600 });
    const args = ['smime', '-verify', '-in', input, '-inform', 'SMIME', '-no-CAfile', '-no-CApath', '-no-CAstore'];
    if (trust.caPath) args.push('-CApath', trust.caPath);
    if (trust.caFile) args.push('-CAfile', trust.caFile);
    if (trust.crls) args.push('-crl_check_all');
    // Grid endorser certificates are personal or host certificates, not always S/MIME-purposed.
    args.push('-purpose', 'any', '-signer', signerFile, '-out', contentFile);
    const { code, stderr } = await run('openssl', args, signal);
    if (code !== 0) throw refusal(stderr);
    const signerPem = await readFile(signerFile, 'utf8');
    const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(signerPem);
    if (!first) throw sourceError('badSignature', 'the signature names no signer certificate');
    return { content: stripMimeHeaders(await readFile(contentFile)), signer: new X509Certificate(first[0]) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function refusal(stderr: string): VisorError {
  const detail = /Verify error:\s*([^\n]+)/.exec(stderr)?.[1]?.trim();
  const said = detail ?? stderr.split('\n').find((l) => l.includes('error:'))?.replace(/^.*?:error:[^:]*:/, '') ?? stderr.trim();
  const reason = `OpenSSL: ${said.slice(0, 200)}`;
  if (/expired|not yet valid/i.test(stderr)) return sourceError('expired', `the list's signer certificate is not valid now (${reason})`);
  if (/CRL|revoked/i.test(stderr)) {
    return sourceError('untrusted', `the list's signer certificate is revoked or its CRL is missing (${reason})`);
  }
  if (/issuer certificate|self.signed|certificate verify error|unable to verify/i.test(stderr)) {
    return sourceError('untrusted', `the list's signer is not trusted by the configured CAs (${reason})`);
  }
  if (/digest failure|signature failure/i.test(stderr)) {
    return sourceError('badSignature', `the list's signature does not match its content: tampered (${reason})`);
  }
  if (/no content type|reading S\/MIME|mime/i.test(stderr)) return sourceError('unsigned', `the list's S/MIME structure is broken (${reason})`);
  return sourceError('badSignature', `the list's signature does not verify (${reason})`);
}

/** The signed part may carry its own MIME headers (signed with `-text`): JSON starts after them. */
function stripMimeHeaders(content: Buffer): Buffer {
  const head = content.subarray(0, 1024).toString('latin1');
  if (!/^[A-Za-z][A-Za-z0-9-]*:/.test(head)) return content;
  const end = /\r?\n\r?\n/.exec(head);
  return end ? content.subarray(end.index + end[0].length) : content;
}

function run(command: string, args: string[], signal?: AbortSignal): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(signal ? { signal } : {}) });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      if (stderr.length < 16_384) stderr += text;
    });
    child.on('error', (error) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new VisorError('unsupported', 'verifying S/MIME image lists needs the openssl command (Debian package openssl)'));
      } else reject(error);
    });
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}
