import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { VisorError } from '../../errors.js';

/**
 * Keeps HTTP references from reaching the server's own networks (SSRF): loopback, private,
 * link-local (cloud metadata services live at 169.254.169.254), carrier-grade NAT, the
 * documentation and benchmarking ranges, multicast, and every other special-purpose block
 * (IANA's IPv4 and IPv6 special-purpose registries), in both IPv4 and IPv6 spellings.
 * Names are checked at connect time through the agent's `lookup` (DNS rebinding cannot slip
 * past it); IP literals, which never go through a lookup, are checked before each request,
 * on every redirect hop.
 */
const blocked = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // TEST-NET-1
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // TEST-NET-2
  ['203.0.113.0', 24], // TEST-NET-3
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address
] as const) {
  blocked.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback, IPv4-compatible
  ['::ffff:0:0', 96], // IPv4-mapped (also matched against the IPv4 rules above)
  ['64:ff9b::', 96], // NAT64
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 23], // IETF protocol assignments: Teredo, benchmarking, ORCHID, ...
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4 (embeds any IPv4 address)
  ['3fff::', 20], // documentation
  ['5f00::', 16], // segment routing
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}

/** True for addresses no HTTP reference may reach; anything that is not an IP address counts as one. */
export function isPrivateAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '');
  const family = isIP(bare);
  if (family === 0) return true;
  return blocked.check(bare, family === 4 ? 'ipv4' : 'ipv6');
}

/** Which addresses HTTP references may reach. */
export class AddressPolicy {
  readonly #allowPrivate: boolean;
  readonly #allowed = new BlockList();

  /**
   * `allowNetworks`: CIDR blocks (e.g. an internal mirror's 10.1.2.0/24) let through although
   * private; everything else private stays refused. `allowPrivate` lets every address through.
   */
  constructor(options: { allowPrivate?: boolean; allowNetworks?: readonly string[] } = {}) {
    this.#allowPrivate = options.allowPrivate ?? false;
    for (const cidr of options.allowNetworks ?? []) {
      const [net, bits] = parseCidr(cidr);
      this.#allowed.addSubnet(net, bits, isIP(net) === 4 ? 'ipv4' : 'ipv6');
    }
  }

  permits(address: string): boolean {
    if (this.#allowPrivate) return true;
    const bare = address.replace(/^\[|\]$/g, '');
    const family = isIP(bare);
    if (family !== 0 && this.#allowed.check(bare, family === 4 ? 'ipv4' : 'ipv6')) return true;
    return !isPrivateAddress(bare);
  }

  /** For a URL's host: an IP literal must be permitted; a name is left to `lookup` at connect time. */
  permitsHost(hostname: string): boolean {
    const bare = hostname.replace(/^\[|\]$/g, '');
    return isIP(bare) === 0 || this.permits(bare);
  }

  /** A `lookup` for http(s).Agent that refuses addresses this policy does not permit. */
  readonly lookup = (hostname: string, options: object, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, '');
      const list = addresses as LookupAddress[];
      const bad = list.find((a) => !this.permits(a.address));
      if (bad) {
        const why = `refusing to connect to ${hostname} (${bad.address}): a private, local or reserved address`;
        const refusal = Object.assign(new Error(why), { code: 'EVISORPRIVATE' });
        return callback(refusal, '');
      }
      if ((options as { all?: boolean }).all) return callback(null, list);
      const first = list[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '');
      return callback(null, first.address, first.family);
    });
  };
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

function parseCidr(cidr: string): [string, number] {
  const [net = '', bits] = cidr.split('/');
  const family = isIP(net);
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    throw new VisorError('config', `allowNetworks: "${cidr}" is not an address or CIDR block (e.g. 10.1.2.0/24)`);
  }
  return [net, prefix];
}
