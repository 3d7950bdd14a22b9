import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import { print, printJson, type CliIo } from '../io.js';

interface SubscribeFlags {
  config?: string;
  format?: string;
  tags?: string;
  tagPattern?: string;
  plainHttp?: boolean;
  authFile?: string;
  caBundle?: string;
  name?: string;
  filter: string[];
  caPath?: string;
  caFile?: string;
  endorser: string[];
  keyring?: string;
  schedule?: string;
  retire?: string;
  unsigned?: boolean;
  allowPrivateNetworks?: boolean;
  json?: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/**
 * `visor subscribe URL`: checks the list now (fetched and verified as a run would), then adds
 * the subscription to the config file, comments and all. Nothing is written if the list is
 * refused or the config would not load.
 */
export function subscribeCommand(program: Command, io: CliIo): void {
  program
    .command('subscribe')
    .description(
      'subscribe the catalog to a HEPiX image list, a simplestreams mirror or an OCI repository ' +
        '(written into the config)',
    )
    .argument('<url>', 'the list (hepix), the mirror root (simplestreams) or oci://HOST[:PORT]/REPO')
    .option('--format <format>', 'hepix or simplestreams (oci:// URLs are oci)')
    .option('--tags <list>', 'oci: the tags to follow, comma-separated (default: all)')
    .option('--tag-pattern <regex>', 'oci: follow the tags this regular expression matches')
    .option('--plain-http', 'oci: speak http to the registry (loopback or a lab)')
    .option('--auth-file <file>', 'oci: a docker login-style auth file')
    .option('--ca-bundle <file>', 'oci: PEM file of extra CAs to trust')
    .option('-c, --config <file>', 'config file to add the subscription to', io.env['VISOR_CONFIG'])
    .option('--name <name>', 'subscription name (default: from the URL host)')
    .option('--filter <filter>', 'key=value, key!=value, key~regex, key!~regex (repeatable)', collect, [])
    .option('--ca-path <dir>', 'hepix: folder of hashed CA certificates')
    .option('--ca-file <file>', 'hepix: PEM bundle of trusted CAs')
    .option('--endorser <dn>', 'hepix: accepted endorser DN (repeatable)', collect, [])
    .option('--keyring <file>', 'simplestreams: OpenPGP keyring the streams are signed with')
    .option('--unsigned', 'accept an unsigned list (hepix) or stream (simplestreams: the default without --keyring)')
    .option('--allow-private-networks', 'the list or images are on a loopback/private address (an internal mirror)')
    .option('--schedule <cron>', 'when visor agent follows it, e.g. "*/30 * * * *"')
    .option('--retire <policy>', 'deprecate, delete or keep')
    .option('--json', 'print JSON')
    .action(async (url: string, flags: SubscribeFlags) => {
      if (!flags.config)
        throw new VisorError('invalidInput', 'give the config file to add the subscription to (-c FILE)');
      const oci = url.startsWith('oci://');
      const format = flags.format ?? (oci ? 'oci' : undefined);
      if (format !== 'hepix' && format !== 'simplestreams' && format !== 'oci') {
        const got = format === undefined ? 'none' : `"${format.slice(0, 40)}"`;
        throw new VisorError('invalidInput', `--format must be hepix or simplestreams (got ${got})`);
      }
      if (oci !== (format === 'oci')) {
        throw new VisorError('invalidInput', 'an oci:// URL is an OCI repository, and an OCI repository needs one');
      }
      const { readFile, writeFile, rename } = await import('node:fs/promises');
      const { parseDocument } = await import('yaml');
      const { openRuntime } = await import('../../runtime/open-runtime.js');
      const { isUnchanged } = await import('../../../core/source/port.js');
      const name = flags.name ?? defaultName(oci ? `http://${url.slice('oci://'.length)}` : url);
      const options: Record<string, unknown> = oci ? ociOptions(url, flags) : { url };
      if (flags.allowPrivateNetworks) options['allowPrivateNetworks'] = true;
      if (format === 'oci') {
        // Checked by the source's own option schema when the new config loads (below).
      } else if (format === 'hepix') {
        if (flags.caPath) options['caPath'] = flags.caPath;
        if (flags.caFile) options['caFile'] = flags.caFile;
        if (flags.endorser.length > 0) options['endorsers'] = flags.endorser;
        if (flags.unsigned) options['requireSignature'] = false;
      } else {
        if (flags.keyring) options['keyring'] = flags.keyring;
        if (flags.filter.length > 0) options['filters'] = flags.filter;
      }
      const subscription: Record<string, unknown> = { source: format, options };
      if (format !== 'simplestreams' && flags.filter.length > 0) subscription['filters'] = flags.filter;
      if (flags.schedule) subscription['schedule'] = flags.schedule;
      if (flags.retire) subscription['retire'] = flags.retire;

      const text = await readFile(flags.config, 'utf8');
      const doc = parseDocument(text);
      if (doc.hasIn(['subscriptions', name])) {
        throw new VisorError('conflict', `the config already has a subscription "${name}" (choose another --name)`);
      }
      doc.setIn(['subscriptions', name], doc.createNode(subscription));
      // The new file must load as a whole before it replaces the old one.
      const candidate = `${flags.config}.visor-new`;
      await writeFile(candidate, doc.toString(), { mode: 0o600 });
      let entries = 0;
      let signer: string | undefined;
      try {
        const runtime = await openRuntime({ configFile: candidate, env: io.env });
        try {
          const source = await runtime.source(name);
          try {
            const listing = await source.list();
            if (!isUnchanged(listing)) {
              entries = listing.entries.length;
              signer = listing.signer;
            }
          } finally {
            await source.close();
          }
        } finally {
          await runtime.close();
        }
      } catch (error) {
        const { rm } = await import('node:fs/promises');
        await rm(candidate, { force: true });
        throw error;
      }
      await rename(candidate, flags.config);
      if (flags.json) printJson(io, { name, entries, signer: signer ?? null });
      else {
        const by = signer ? `, signed by ${signer}` : '';
        print(io, `Subscribed ${name}: ${entries} image(s) offered${by}. \`visor sources sync ${name}\` imports them;`);
        print(io, 'a running agent picks the subscription up on reload (SIGHUP).');
      }
    });
}

/** oci://HOST[:PORT]/REPO (no tag: the tags are chosen with --tags or --tag-pattern) -> the source's options. */
function ociOptions(url: string, flags: SubscribeFlags): Record<string, unknown> {
  const rest = url.slice('oci://'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1 || /[:@]/.test(rest.slice(slash + 1))) {
    throw new VisorError('invalidInput', `not an OCI repository: ${url.slice(0, 100)} (oci://HOST[:PORT]/REPO)`);
  }
  if (flags.tags !== undefined && flags.tagPattern !== undefined) {
    throw new VisorError('invalidInput', 'give --tags or --tag-pattern, not both');
  }
  const options: Record<string, unknown> = { registry: rest.slice(0, slash), repository: rest.slice(slash + 1) };
  if (flags.plainHttp) options['plainHttp'] = true;
  if (flags.tags !== undefined)
    options['tags'] = flags.tags
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
  if (flags.tagPattern !== undefined) options['tagPattern'] = flags.tagPattern;
  if (flags.authFile) options['auth'] = { authFile: flags.authFile };
  if (flags.caBundle) options['caBundle'] = flags.caBundle;
  return options;
}

function defaultName(url: string): string {
  let host = 'list';
  try {
    host = new URL(url).hostname;
  } catch {
    throw new VisorError('invalidInput', `not a URL: ${url.slice(0, 100)}`);
  }
  const name = host
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^[^a-z]+|-+$/g, '');
  return (name || 'list').slice(0, 60);
}
