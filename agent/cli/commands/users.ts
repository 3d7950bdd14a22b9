import type { Command } from 'commander';
import type { CliIo } from '../io.js';
import { print, printJson, table } from '../io.js';

/** Local administration of API users: works on the catalog directly (run it where the server's data is). */
export function usersCommand(program: Command, io: CliIo): void {
  const users = program.command('users').description('manage API users (access key + secret key)');
  const common = (command: Command) =>
    command
      .option('-c, --config <file>', 'config file', io.env['VISOR_CONFIG'])
      .option('--data-dir <dir>', 'data directory (default: $VISOR_DATA_DIR or ~/.local/share/visor)')
      .option('--json', 'print JSON');

  const withCatalog = async <T>(
    opts: { config?: string; dataDir?: string },
    fn: (ctx: Awaited<ReturnType<typeof open>>) => Promise<T>,
  ): Promise<T> => {
    const ctx = await open(opts, io);
    try {
      return await fn(ctx);
    } finally {
      await ctx.dispose();
    }
  };

  common(
    users
      .command('add')
      .description('create a user and print its keys (the secret is shown only this once)')
      .argument('<name>')
      .option('--admin', 'may see and change every image'),
  ).action(async (name: string, opts: { config?: string; dataDir?: string; json?: boolean; admin?: boolean }) => {
    const { addUser } = await import('../../service/users.js');
    const created = await withCatalog(opts, async ({ catalog, box }) =>
      addUser(catalog.users, box, name, opts.admin === true),
    );
    const { id, accessKey, secretKey, admin } = created;
    if (opts.json) printJson(io, { id, name: created.name, accessKey, secretKey, admin });
    else {
      const who = `Created ${admin ? 'admin ' : ''}user ${created.name} (id ${id})`;
      const keys = `ACCESS KEY: ${accessKey}\nSECRET KEY: ${secretKey}`;
      print(io, `${who}\n${keys}\n(store the secret now: it cannot be shown again)`);
    }
  });

  common(users.command('list').description('list users (never their secrets)')).action(
    async (opts: { config?: string; dataDir?: string; json?: boolean }) => {
      const list = await withCatalog(opts, async ({ catalog }) => catalog.users.list());
      const rows = list.map(({ id, name, accessKey, admin, createdAt }) => ({ id, name, accessKey, admin, createdAt }));
      if (opts.json) printJson(io, rows);
      else {
        const cells = rows.map((u) => [u.name, u.id, u.accessKey, u.admin ? 'yes' : 'no', u.createdAt]);
        print(io, table(['NAME', 'ID', 'ACCESS KEY', 'ADMIN', 'CREATED'], cells));
      }
    },
  );

  const remove = users
    .command('remove')
    .description(
      'delete a user (its keys stop working at once; its images keep its id as owner, ' +
        'so a new user of the same name gets none of them)',
    )
    .argument('<name>');
  common(remove).action(async (name: string, opts: { config?: string; dataDir?: string; json?: boolean }) => {
    await withCatalog(opts, async ({ catalog }) => catalog.users.delete(name));
    if (opts.json) printJson(io, { removed: name });
    else print(io, `Removed user ${name}`);
  });
}

async function open(opts: { config?: string; dataDir?: string }, io: CliIo) {
  const { openRuntime } = await import('../../runtime/open-runtime.js');
  const { sealingBox } = await import('../../serve.js');
  const { silentLogger } = await import('../../../core/logging/logger.js');
  const options = { configFile: opts.config, dataDir: opts.dataDir, env: io.env, logger: silentLogger };
  const runtime = await openRuntime(options);
  try {
    return { catalog: await runtime.catalog(), box: await sealingBox(runtime), dispose: () => runtime.close() };
  } catch (error) {
    await runtime.close();
    throw error;
  }
}
