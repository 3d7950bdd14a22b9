import type { X509Certificate } from 'node:crypto';

/**
 * Distinguished names as HEPiX lists write them (OpenSSL's old one-line form,
 * `/C=NL/O=Grid/CN=Someone`), and a comparable form: attribute types upper-cased, values kept.
 */
export function slashDn(name: string): string {
  // Node prints one attribute per line (`C=NL\nO=Grid\nCN=Someone`).
  return `/${name.split('\n').filter(Boolean).join('/')}`;
}

export function subjectDn(certificate: X509Certificate): string {
  return slashDn(certificate.subject);
}

export function issuerDn(certificate: X509Certificate): string {
  return slashDn(certificate.issuer);
}

/** Normalises `/C=NL/O=Grid/CN=Someone` (or `C=NL, O=Grid, CN=Someone`) for comparison. */
export function normaliseDn(dn: string): string {
  const text = dn.trim();
  const parts = text.startsWith('/') ? text.slice(1).split(/\/(?=[A-Za-z][A-Za-z0-9.]*=)/) : text.split(/,\s*(?=[A-Za-z][A-Za-z0-9.]*=)/);
  return parts
    .map((part) => {
      const at = part.indexOf('=');
      return at < 0 ? part.trim() : `${part.slice(0, at).trim().toUpperCase()}=${part.slice(at + 1).trim()}`;
    })
    .join('/');
}

export function sameDn(a: string, b: string): boolean {
  return normaliseDn(a) === normaliseDn(b);
}
