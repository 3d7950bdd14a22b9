import type { Command } from 'commander';
import type { Catalog } from '../../../core/catalog/port.js';
import { VisorError } from '../../../core/errors.js';
import { ExitCode } from '../exit-codes.js';
import { print, printJson, type CliIo } from '../io.js';
import { type RuntimeFlags, runtimeOptions, withRuntimeFlags } from '../options.js';

interface MigrationResult {
  from: number;
  to: number;
  applied: { version: number; name: string }[];
}

/** A catalog whose schema is versioned (postgresql): it migrates on request, not only when opened. */
type Migratable = Catalog & { migrate(): Promise<MigrationResult>; where?: string };
const migratable = (catalog: Catalog): catalog is Migratable =>
  typeof (catalog as Partial<Migratable>).migrate === 'function';

/** `visor catalog migrate|backup|restore|copy`: the catalog's schema, its backups, and moving it elsewhere. */
export function catalogCommand(program: Command, io: CliIo): void {
  const catalog = program
    .command('catalog')
    .description('the catalog itself: its schema, backups, and copying it to another catalog');
  withRuntimeFlags(
    catalog
      .command('migrate')
      .description("bring the catalog's schema up to date (forward only, under a lock: safe while other servers run)"),
    io,
  ).action(async (flags: RuntimeFlags) => {
    const { openRuntime } = await import('../../runtime/open-runtime.js');
    const runtime = await openRuntime(runtimeOptions(flags, io));
    try {
      // Built by its factory but not opened: opening may refuse a schema that is behind.
      const catalog = await runtime.unopenedCatalog();
      try {
        await migrateCatalog(catalog, flags, io);
      } finally {
        await catalog.close();
      }
    } finally {
      await runtime.close();
    }
  });
  withRuntimeFlags(
    catalog
      .command('backup')
      .argument('<file>', 'the backup file to create (its folder must not be readable or writable by others)')
      .description(
        'write the catalog as it is at one moment (while servers and agents run) into one file: ' +
          'images, users, run history, agent state, and the key that opens the stored credentials',
      ),
    io,
  ).action(async (file: string, flags: RuntimeFlags) => {
    const { openRuntime } = await import('../../runtime/open-runtime.js');
    const { backupCatalog } = await import('../catalog-backup.js');
    const runtime = await openRuntime(runtimeOptions(flags, io));
    try {
      const result = await backupCatalog(runtime, file);
      const counts = Object.fromEntries(Object.entries(result.records).map(([kind, t]) => [kind, t.count]));
      if (flags.json) printJson(io, { ...result, records: counts });
      else {
        const listed = Object.entries(counts).map(([kind, n]) => `${n} ${kind}`);
        print(io, `Backed up the ${result.sourceKind} catalog to ${result.file}: ${listed.join(', ')}`);
        if (!result.snapshot) print(io, 'note: this catalog offers no snapshot; records were read while it ran');
        print(io, 'The file holds the key to every stored credential: keep it as private as the key file.');
      }
    } finally {
      await runtime.close();
    }
  });
  withRuntimeFlags(
    catalog
      .command('restore')
      .argument('<file>', 'a file written by `visor catalog backup`')
      .option(
        '--force',
        'the configured catalog holds records: delete its images, users, run history and agent state first',
      )
      .description(
        'check a backup (integrity, manifest, counts, checksums) and restore it into the configured catalog, ' +
          'which must be empty unless --force',
      ),
    io,
  ).action(async (file: string, flags: RuntimeFlags & { force?: boolean }) => {
    const { openRuntime } = await import('../../runtime/open-runtime.js');
    const { restoreCatalog } = await import('../catalog-backup.js');
    const runtime = await openRuntime(runtimeOptions(flags, io));
    try {
      const result = await restoreCatalog(runtime, file, flags.force === true);
      const counts = Object.fromEntries(Object.entries(result.records).map(([kind, t]) => [kind, t.count]));
      if (flags.json) printJson(io, { ...result, records: counts });
      else {
        const listed = Object.entries(counts).map(([kind, n]) => `${n} ${kind}`);
        if (result.removed) print(io, `--force: deleted ${result.removed} from the ${result.destinationKind} catalog`);
        print(io, `Restored ${file} into the ${result.destinationKind} catalog: ${listed.join(', ')}; checksums match`);
        if (result.note) print(io, `note: ${result.note}`);
        if (result.missingStores.length > 0) {
          print(
            io,
            `warning: images are stored in ${result.missingStores.join(', ')}, which this config has no store for`,
          );
        }
      }
    } finally {
      await runtime.close();
    }
  });
  catalog
    .command('copy')
    .description(
      'copy a whole catalog (images, users with their sealed secrets, run history, agent state) into an empty one, ' +
        'then compare counts and checksums (run it with the servers and agents of the source stopped)',
    )
    .requiredOption('--from <config>', 'config file of the source catalog')
    .requiredOption('--to <config>', 'config file of the destination catalog (must be empty)')
    .option('--json', 'print JSON')
    .action(async (opts: { from: string; to: string; json?: boolean }) => {
      const { resolve } = await import('node:path');
      if (resolve(opts.from) === resolve(opts.to))
        throw new VisorError('invalidInput', '--from and --to name the same config file');
      const { openRuntime } = await import('../../runtime/open-runtime.js');
      const { copyBetween, printCopyReport } = await import('../catalog-copy.js');
      const source = await openRuntime({ configFile: opts.from, env: io.env });
      try {
        const destination = await openRuntime({ configFile: opts.to, env: io.env });
        try {
          const copied = await copyBetween(source, destination);
          if (opts.json) printJson(io, { from: opts.from, to: opts.to, ...copied.report, ...copied.notes });
          else printCopyReport(io, copied);
          if (!copied.report.same) {
            io.stderr.write('visor: the copy differs from the source (see above); the source is unchanged\n');
            process.exitCode = ExitCode.failure;
          }
        } finally {
          await destination.close();
        }
      } finally {
        await source.close();
      }
    });
}

async function migrateCatalog(catalog: Catalog, flags: RuntimeFlags, io: CliIo): Promise<void> {
  if (!migratable(catalog)) {
    await catalog.init();
    const line = `${catalog.kind} catalog: its tables are brought up to date when it opens; nothing to migrate`;
    if (flags.json) printJson(io, { catalog: catalog.kind, migrated: false });
    else print(io, line);
    return;
  }
  const result = await catalog.migrate();
  const where = `${catalog.kind} catalog ${catalog.where ?? ''}`.trimEnd();
  if (flags.json) printJson(io, { catalog: catalog.kind, where: catalog.where, ...result });
  else if (result.applied.length === 0) print(io, `${where}: schema version ${result.to}, the latest: nothing to do`);
  else {
    const applied = result.applied.map((m) => `  ${m.version}: ${m.name}`).join('\n');
    print(io, `${where}: schema version ${result.from} -> ${result.to}\n${applied}`);
  }
}
