import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** An OpenPGP signing key made by gpg at test time, in its own home, and its public keyring file. */
export class TestGpgKey {
  readonly home: string;
  readonly keyring: string;

  constructor(readonly uid: string) {
    const root = mkdtempSync(join(tmpdir(), 'visor-gpg-'));
    this.home = join(root, 'home');
    mkdirSync(this.home, { mode: 0o700 });
    this.#gpg(['--batch', '--passphrase', '', '--quick-gen-key', uid, 'rsa2048', 'sign', 'never']);
    this.keyring = join(root, 'keyring.gpg');
    writeFileSync(this.keyring, this.#gpg(['--export']));
  }

  /** A cleartext-signed copy of `content` (a simplestreams `.sjson`). */
  clearsign(content: Buffer): Buffer {
    const dir = mkdtempSync(join(tmpdir(), 'visor-gpg-sign-'));
    writeFileSync(join(dir, 'in'), content);
    this.#gpg(['--batch', '--yes', '--clearsign', '-o', join(dir, 'out'), join(dir, 'in')]);
    return readFileSync(join(dir, 'out'));
  }

  #gpg(args: string[]): Buffer {
    return execFileSync('gpg', ['--homedir', this.home, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  }
}
