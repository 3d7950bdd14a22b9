import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { SecretBox } from '../../../core/auth/secret-box.js';
import { copyCatalog, recordKinds, type CopyReport } from '../../../core/catalog/copy.js';
import type { Catalog, User } from '../../../core/catalog/port.js';
import { isVisorError, VisorError } from '../../../core/errors.js';
import { ensurePrivateDir } from '../../../core/fs/private-paths.js';
import { ServiceIds, type CatalogFactory } from '../../../core/registry/ids.js';
import { resolveAsync, RuntimeIds } from '../../../core/registry/runtime.js';
import { compose, type Composition } from '../../compose.js';
import { ExitCode } from '../exit-codes.js';
import { print, printJson, table, type CliIo } from '../io.js';

interface MigrationResult {
  from: number;
  to: number;
  applied: { version: number; name: string }[];
}

/** A catalog whose schema is versioned (postgresql): it migrates on request, not only when opened. */
type Migratable = Catalog & { migrate(): Promise<MigrationResult>; where?: string };
const migratable = (catalog: Catalog): catalog is Migratable =>
  typeof (catalog as Partial<Migratable>).migrate === 'function';

export async function runMigrate(
  opts: { config?: string; dataDir?: string; json?: boolean },
  io: CliIo,
): Promise<void> {
  const composition = await compose({ configFile: opts.config, dataDir: opts.dataDir, env: io.env });
  try {
    const { config } = composition;
    // Built by its factory but not opened: opening may refuse a schema that is behind.
    ensurePrivateDir(config.dataDir);
    const factory = composition.registry.container.get<CatalogFactory>(ServiceIds.CatalogFactory, {
      name: config.catalog.type,
    });
    const context = {
      name: 'catalog',
      dataDir: config.dataDir,
      logger: composition.logger.child({ catalog: 'catalog' }),
      secrets: composition.secrets,
    };
    const catalog = await factory.create(config.catalog.options, context);
    try {
      if (!migratable(catalog)) {
        await catalog.init();
        const line = `${catalog.kind} catalog: its tables are brought up to date when it opens; nothing to migrate`;
        if (opts.json) printJson(io, { catalog: catalog.kind, migrated: false });
        else print(io, line);
        return;
      }
      const result = await catalog.migrate();
      const where = `${catalog.kind} catalog ${catalog.where ?? ''}`.trimEnd();
      if (opts.json) printJson(io, { catalog: catalog.kind, where: catalog.where, ...result });
      else if (result.applied.length === 0)
        print(io, `${where}: schema version ${result.to}, the latest: nothing to do`);
      else {
        const applied = result.applied.map((m) => `  ${m.version}: ${m.name}`).join('\n');
        print(io, `${where}: schema version ${result.from} -> ${result.to}\n${applied}`);
      }
    } finally {
      await catalog.close();
    }
  } finally {
    await composition.dispose();
  }
}

interface Side {
  composition: Composition;
  catalog: Catalog;
  keyPath: string;
}

async function openSide(file: string, io: CliIo): Promise<Side> {
  const composition = await compose({ configFile: file, env: io.env });
  try {
    const catalog = await resolveAsync(composition.registry.container, RuntimeIds.Catalog);
    const keyFile = composition.config.server.auth.keyFile;
    const keyPath = isAbsolute(keyFile) ? keyFile : resolve(composition.config.dataDir, keyFile);
    return { composition, catalog, keyPath };
  } catch (error) {
    await composition.dispose();
    throw error;
  }
}

const digest = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * How users' sealed secrets cross over. Each catalog's secrets are sealed with its servers' key
 * file (server.auth.keyFile): when the destination has none yet, it gets the source's key (the
 * secrets are copied as they are); when it has the same key, likewise; when it has another,
 * every secret is opened with the source's key and sealed again with the destination's.
 */
async function sealing(source: Side, destination: Side, users: readonly User[]) {
  const sourceKey = existsSync(source.keyPath) ? await readFile(source.keyPath, 'utf8') : undefined;
  if (sourceKey === undefined) {
    if (users.length > 0) {
      throw new VisorError(
        'config',
        `the source catalog has ${users.length} users, but its credentials key ${source.keyPath} is missing: ` +
          'their secrets cannot be opened; point server.auth.keyFile of the source config at the key its servers use',
      );
    }
    return { note: undefined, reseal: undefined, secretOf: { source: () => '', destination: () => '' } };
  }
  let note: string | undefined;
  if (!existsSync(destination.keyPath)) {
    await mkdir(dirname(destination.keyPath), { recursive: true, mode: 0o700 });
    await writeFile(destination.keyPath, sourceKey, { mode: 0o600, flag: 'wx' });
    note = `the destination had no credentials key: the source's was written to ${destination.keyPath}`;
  }
  const destinationKey = await readFile(destination.keyPath, 'utf8');
  const from = await SecretBox.fromFile(source.keyPath);
  const to = await SecretBox.fromFile(destination.keyPath);
  const open = (box: SecretBox, path: string) => (user: User) => {
    try {
      return digest(box.open(user.sealedSecret));
    } catch (error) {
      const why = isVisorError(error) ? error.message : String(error);
      throw new VisorError('config', `the secret of user ${user.name} cannot be opened with ${path}: ${why}`, {
        cause: error,
      });
    }
  };
  const same = sourceKey.trim() === destinationKey.trim();
  if (!same && users.length > 0)
    note = `user secrets were sealed again with the destination's key ${destination.keyPath}`;
  const reseal = same ? undefined : (user: User) => to.seal(from.open(user.sealedSecret));
  // Checked before anything is written: every secret opens with the source's key.
  const sourceSecret = open(from, source.keyPath);
  for (const user of users) sourceSecret(user);
  return { note, reseal, secretOf: { source: sourceSecret, destination: open(to, destination.keyPath) } };
}

export async function runCopy(opts: { from: string; to: string; json?: boolean }, io: CliIo): Promise<void> {
  if (resolve(opts.from) === resolve(opts.to))
    throw new VisorError('invalidInput', '--from and --to name the same config file');
  const source = await openSide(opts.from, io);
  try {
    const destination = await openSide(opts.to, io);
    try {
      const users = await source.catalog.users.list();
      const seal = await sealing(source, destination, users);
      const report = await copyCatalog(source.catalog, destination.catalog, {
        ...(seal.reseal ? { reseal: seal.reseal } : {}),
        secretOf: seal.secretOf,
      });
      const missingStores = await storesMissing(source.catalog, destination.composition);
      if (opts.json) printJson(io, { from: opts.from, to: opts.to, ...report, note: seal.note, missingStores });
      else printReport(io, source.catalog.kind, destination.catalog.kind, report, seal.note, missingStores);
      if (!report.same) {
        io.stderr.write('visor: the copy differs from the source (see above); the source is unchanged\n');
        process.exitCode = ExitCode.failure;
      }
    } finally {
      await destination.composition.dispose();
    }
  } finally {
    await source.composition.dispose();
  }
}

/** Stores the copied images name that the destination's config does not have. */
async function storesMissing(catalog: Catalog, destination: Composition): Promise<string[]> {
  const { allImages } = await import('../../../core/catalog/copy.js');
  const have = new Set(Object.keys(destination.config.stores));
  const missing = new Set<string>();
  for await (const image of allImages(catalog)) {
    const store = image.location?.store;
    if (store !== undefined && store !== 'http' && !have.has(store)) missing.add(store);
  }
  return [...missing].sort();
}

function printReport(
  io: CliIo,
  from: string,
  to: string,
  report: CopyReport,
  note: string | undefined,
  missing: string[],
): void {
  const rows = recordKinds.map((kind) => {
    const s = report.source[kind];
    const d = report.destination[kind];
    const ok = s.count === d.count && s.sha256 === d.sha256;
    return [
      kind,
      String(s.count),
      String(d.count),
      s.sha256.slice(0, 16),
      d.sha256.slice(0, 16),
      ok ? 'same' : 'DIFFERENT',
    ];
  });
  print(io, `Copied the ${from} catalog into the ${to} catalog:`);
  print(io, table(['RECORDS', 'SOURCE', 'COPY', 'SOURCE SHA256', 'COPY SHA256', ''], rows));
  if (note) print(io, `note: ${note}`);
  if (missing.length > 0) {
    print(io, `warning: images are stored in ${missing.join(', ')}, which the destination's config has no store for`);
  }
  print(io, 'Not copied: leases and the replay memory (they only matter to processes running on the source).');
}
