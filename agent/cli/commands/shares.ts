import type { Command } from 'commander';
import { ExitCode } from '../exit-codes.js';
import { print, printJson, table, type CliIo } from '../io.js';
import { type RuntimeFlags, runtimeOptions, withRuntimeFlags } from '../options.js';

interface Copy {
  cloud: string;
  nativeId: string;
  name: string;
  state: string;
  access: string;
  /** Who the copy is shared with, the state of each membership, and whether visor added it. */
  members: { principal: string; status: string; by: 'visor' | 'other' }[];
}

/** `visor shares ID`: the copies of a catalog image in every cloud, read live, and who each is shared with. */
export function sharesCommand(program: Command, io: CliIo): void {
  withRuntimeFlags(
    program
      .command('shares <id>')
      .description('the copies of a catalog image in each cloud, and who each is shared with'),
    io,
  )
    .option('-t, --target <cloud>', 'only this cloud')
    .action(async (id: string, flags: RuntimeFlags & { target?: string }) => {
      const { openSession } = await import('../../session.js');
      const { shareRecords } = await import('../../sync/share-run.js');
      const session = await openSession(runtimeOptions(flags, io), flags.target);
      try {
        const copies: Copy[] = [];
        const failures: string[] = [];
        for (const target of session.built.targets.values()) {
          try {
            const records = await shareRecords(session.deps.catalog, target.name);
            for (const c of await target.driver.list()) {
              const m = c.markers;
              if (!m || m.imageId !== id || m.agent !== session.deps.agentId || m.target !== target.name) continue;
              const managed = new Set(records.get(c.nativeId)?.managed ?? []);
              const members = target.driver.members ? await target.driver.members(c.nativeId) : [];
              copies.push({
                cloud: target.name,
                nativeId: c.nativeId,
                name: c.name,
                state: c.hidden ? `${c.state} (hidden)` : c.state,
                access: c.access,
                members: members.map((x) => ({ ...x, by: managed.has(x.principal) ? 'visor' : 'other' })),
              });
            }
          } catch (error) {
            failures.push(`${target.name}: ${(error as Error).message}`);
          }
        }
        for (const [target, error] of session.built.failed) failures.push(`${target}: ${error.message}`);
        if (flags.json) printJson(io, { imageId: id, copies, failures });
        else if (copies.length === 0) print(io, `No copy of ${id} in the configured clouds.`);
        else {
          const rows = copies.flatMap((c) => {
            const head = [c.cloud, c.nativeId, c.state, c.access];
            if (c.members.length === 0) return [[...head, '-', '-']];
            return c.members.map((m) => [
              ...head,
              m.principal,
              `${m.status}${m.by === 'visor' ? '' : ' (not by visor)'}`,
            ]);
          });
          print(io, table(['CLOUD', 'NATIVE ID', 'STATE', 'ACCESS', 'SHARED WITH', 'MEMBERSHIP'], rows));
        }
        for (const f of failures) io.stderr.write(`visor: cannot read ${f}\n`);
        if (failures.length > 0) process.exitCode = copies.length > 0 ? ExitCode.partial : ExitCode.failure;
      } finally {
        await session.close();
      }
    });
}
