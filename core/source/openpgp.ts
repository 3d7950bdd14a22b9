import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { VisorError } from '../errors.js';
import { sourceError } from './port.js';

export const clearsignedHead = '-----BEGIN PGP SIGNED MESSAGE-----';

export function looksClearsigned(document: Buffer): boolean {
  return document.subarray(0, 64).toString('latin1').trimStart().startsWith(clearsignedHead);
}

export interface VerifiedDocument {
  /** Exactly what gpgv says it verified (its output), never a second extraction of our own. */
  content: Buffer;
  /** The fingerprint of the key that signed it. */
  signer: string;
}

/**
 * Verifies an OpenPGP cleartext-signed document (simplestreams `.sjson`) with gpgv against the
 * keys in `keyring` only (a fresh, empty home: no user or system keys are trusted). gpgv writes
 * the data even for a bad signature, so only the exit status and GOODSIG/VALIDSIG decide.
 */
export async function verifyClearsigned(
  document: Buffer,
  keyring: string,
  signal?: AbortSignal,
): Promise<VerifiedDocument> {
  if (!looksClearsigned(document)) throw sourceError('unsigned', 'the document is not OpenPGP cleartext-signed');
  const home = await mkdtemp(join(tmpdir(), 'visor-gpgv-'));
  try {
    const input = join(home, 'document.sjson');
    const output = join(home, 'document.json');
    await writeFile(input, document, { mode: 0o600 });
    const args = ['--homedir', home, '--keyring', resolve(keyring), '--status-fd', '2', '--output', output, input];
    const { code, stderr } = await run(args, signal);
    const valid = /^\[GNUPG:\] VALIDSIG ([0-9A-F]+)/m.exec(stderr);
    if (code !== 0 || !valid || !/^\[GNUPG:\] GOODSIG /m.test(stderr)) {
      if (/^\[GNUPG:\] BADSIG /m.test(stderr))
        throw sourceError('badSignature', 'the signature does not match the document: tampered');
      if (/^\[GNUPG:\] (NO_PUBKEY|ERRSIG) /m.test(stderr)) {
        throw sourceError('untrusted', 'the document is signed by a key that is not in the configured keyring');
      }
      if (/no valid OpenPGP data|no signature found/i.test(stderr))
        throw sourceError('unsigned', 'the document carries no valid signature');
      const said = stderr.split('\n').find((l) => l.startsWith('gpgv:')) ?? `gpgv exited with ${code}`;
      throw sourceError('badSignature', `the signature does not verify (${said.slice(0, 200)})`);
    }
    return { content: await readFile(output), signer: valid[1]! };
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

function run(args: string[], signal?: AbortSignal): Promise<{ code: number; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn('gpgv', args, { stdio: ['ignore', 'ignore', 'pipe'], ...(signal ? { signal } : {}) });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      if (stderr.length < 65_536) stderr += text;
    });
    child.on('error', (error) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        fail(new VisorError('unsupported', 'verifying signed simplestreams needs gpgv (Debian package gpgv)'));
      } else fail(error);
    });
    child.on('close', (code) => done({ code: code ?? 1, stderr }));
  });
}
