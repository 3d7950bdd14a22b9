import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ensurePackages } from './debian.js';
import { PeerError, type PeerDefinition } from './peer.js';

/** A command-line tool from a Debian package (qemu-img, openssl, ...), as a peer. */
export interface ToolPeer {
  /** The binary to run: the tool on PATH, or the path VISOR_TEST_BIN_<TOOL> names. */
  bin: string;
  version: string;
}

const run = promisify(execFile);

/** `VISOR_TEST_BIN_QEMU_IMG` for qemu-img: lets a run point a tool elsewhere (or nowhere). */
export const binVariable = (command: string) => `VISOR_TEST_BIN_${command.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;

export function debianTool(options: {
  command: string;
  pkg: string;
  versionArgs: string[];
  usedBy: string;
}): PeerDefinition<ToolPeer> {
  const { command, pkg, versionArgs } = options;
  const variable = binVariable(command);
  /** The first line the tool prints about its version (some print it on stderr). */
  const version = async (bin: string) => {
    const { stdout, stderr } = await run(bin, versionArgs, { timeout: 30_000 });
    return `${stdout}${stderr}`.trim().split('\n')[0] ?? '';
  };
  return {
    title: command,
    usedBy: options.usedBy,
    async start() {
      const override = process.env[variable];
      const bin = override || command;
      const first = await version(bin).catch((error: Error) => error);
      if (typeof first === 'string') return { coordinates: { bin, version: first }, version: first, reused: true };
      // A binary named on purpose is used as it is: installing the package would not change it.
      if (override)
        throw new PeerError('unavailable', `${command} does not run from ${variable}=${override}`, first.message);
      await ensurePackages([pkg]);
      const second = await version(bin).catch((error: Error) => error);
      if (typeof second !== 'string')
        throw new PeerError(
          'failed',
          `${pkg} is installed but \`${command} ${versionArgs.join(' ')}\` fails`,
          second.message,
        );
      return { coordinates: { bin, version: second }, version: second, reused: false };
    },
  };
}
