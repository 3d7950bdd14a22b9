import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import { humanSize } from '../format.js';
import { print, printJson, type CliIo } from '../io.js';
import { type RuntimeFlags, runtimeOptions, withRuntimeFlags } from '../options.js';

interface PublishFlags extends RuntimeFlags {
  plainHttp?: boolean;
  authFile?: string;
  username?: string;
  caBundle?: string;
  access?: string;
  format?: string;
  allowPrivateNetworks?: boolean;
}

export function publishCommand(program: Command, io: CliIo): void {
  const command = program
    .command('publish')
    .description('push a catalog image to an OCI registry as an ORAS-style disk artifact')
    .argument('<id>', 'catalog image id')
    .argument('<reference>', 'oci://HOST[:PORT]/REPOSITORY:TAG');
  withRuntimeFlags(command, io)
    .option('--plain-http', 'speak http, not https (a registry on loopback or in a lab)')
    .option('--auth-file <file>', 'docker login-style auth file (default: $REGISTRY_AUTH_FILE, ~/.docker/config.json)')
    .option('-u, --username <user>', 'registry user; the password is read from $VISOR_OCI_PASSWORD')
    .option('--ca-bundle <file>', "PEM file of the CA the registry's certificate chains to")
    .option('--access <level>', 'who may pull from the repository: private (default) or public', 'private')
    .option('--format <format>', "disk format to publish (converted first; default: the image's own)")
    .option('--allow-private-networks', 'let blob redirects go to private addresses')
    .action(async (id: string, reference: string, flags: PublishFlags) => {
      if (flags.access !== 'public' && flags.access !== 'private') {
        throw new VisorError('invalidInput', `--access must be public or private, got "${flags.access}"`);
      }
      let credentials: { username: string; password: string } | undefined;
      if (flags.username !== undefined) {
        const password = io.env['VISOR_OCI_PASSWORD'];
        if (!password) throw new VisorError('invalidInput', '--username needs the password in $VISOR_OCI_PASSWORD');
        credentials = { username: flags.username, password };
      }
      const caBundle = flags.caBundle ? await readFile(resolve(io.cwd, flags.caBundle), 'utf8') : undefined;
      const { openSession } = await import('../../session.js');
      const { publishToOci } = await import('../../publish-oci.js');
      const session = await openSession(runtimeOptions(flags, io));
      try {
        const result = await publishToOci(session, id, reference, {
          ...(flags.plainHttp ? { plainHttp: true } : {}),
          ...(credentials ? { credentials } : {}),
          ...(flags.authFile ? { authFile: resolve(io.cwd, flags.authFile) } : {}),
          ...(caBundle ? { caBundle } : {}),
          access: flags.access,
          ...(flags.format ? { format: flags.format } : {}),
          ...(flags.allowPrivateNetworks ? { allowPrivateNetworks: true } : {}),
        });
        if (flags.json) printJson(io, result);
        else {
          const size = humanSize(result.image.size ?? 0);
          print(io, `Published image ${id} to ${result.reference} (${size}, sha256:${result.image.checksums.sha256})`);
        }
      } finally {
        await session.close();
      }
    });
}
