import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

export interface Signer {
  cert: string;
  key: string;
  dn: string;
  caDn: string;
}

/**
 * A certificate authority made by openssl at test time, IGTF style: its certificate under its
 * hashed name in a CA folder; signers issued by it (valid, or valid only in the past).
 */
export class TestCa {
  readonly dir: string;
  readonly dn: string;
  readonly cert: string;
  readonly key: string;
  #serial = 1;

  constructor(readonly name: string, root = mkdtempSync(join(tmpdir(), 'visor-pki-'))) {
    this.dir = join(root, name);
    mkdirSync(this.dir, { recursive: true });
    this.dn = `/C=NL/O=visor test grid/CN=${name}`;
    this.cert = join(this.dir, 'ca.pem');
    this.key = join(this.dir, 'ca.key');
    openssl(
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', this.key, '-out', this.cert, '-days', '30', '-subj', this.dn,
        '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
      this.dir,
    );
  }

  /** Installs this CA into an IGTF-style folder under its subject hash (`<hash>.0`). */
  installInto(caPath: string): void {
    mkdirSync(caPath, { recursive: true });
    const hash = openssl(['x509', '-hash', '-noout', '-in', this.cert], this.dir).toString().trim();
    copyFileSync(this.cert, join(caPath, `${hash}.0`));
  }

  /** A signer certificate; `expired` makes one whose validity ended a year ago. */
  issue(commonName: string, options: { expired?: boolean } = {}): Signer {
    const serial = this.#serial++;
    const key = join(this.dir, `s${serial}.key`);
    const csr = join(this.dir, `s${serial}.csr`);
    const cert = join(this.dir, `s${serial}.pem`);
    const dn = `/C=NL/O=visor test grid/CN=${commonName}`;
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', dn], this.dir);
    if (options.expired) {
      // `openssl ca` is the one that sets arbitrary validity dates in OpenSSL 3.0.
      const db = join(this.dir, `db${serial}`);
      mkdirSync(db);
      writeFileSync(join(db, 'index.txt'), '');
      writeFileSync(join(db, 'serial'), `${(1000 + serial).toString(16).padStart(4, '0')}\n`);
      const config = join(db, 'ca.cnf');
      writeFileSync(
        config,
        [
          '[ca]', 'default_ca = test', '[test]', `dir = ${db}`, 'database = $dir/index.txt', 'serial = $dir/serial',
          'new_certs_dir = $dir', `certificate = ${this.cert}`, `private_key = ${this.key}`, 'default_md = sha256',
          'policy = any', 'unique_subject = no', '[any]', 'countryName = optional', 'organizationName = optional',
          'commonName = supplied', '',
        ].join('\n'),
      );
      openssl(
        ['ca', '-batch', '-config', config, '-in', csr, '-out', cert, '-startdate', '20240101000000Z', '-enddate', '20250101000000Z', '-notext'],
        this.dir,
      );
    } else {
      openssl(['x509', '-req', '-in', csr, '-CA', this.cert, '-CAkey', this.key, '-set_serial', String(serial), '-out', cert, '-days', '10'], this.dir);
    }
    return { cert, key, dn, caDn: this.dn };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Signs `content` as HEPiX lists are distributed: S/MIME multipart/signed, detached, SHA-256. */
export function smimeSign(content: Buffer, signer: Signer): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'visor-sign-'));
  try {
    writeFileSync(join(dir, 'in'), content);
    openssl(['smime', '-sign', '-signer', signer.cert, '-inkey', signer.key, '-in', 'in', '-out', 'out', '-md', 'sha256'], dir);
    return readFileSync(join(dir, 'out'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
