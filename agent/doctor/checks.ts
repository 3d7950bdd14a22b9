import { execFile } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { promisify } from 'node:util';
import type { Catalog } from '../../core/catalog/port.js';
import { VisorError } from '../../core/errors.js';
import type { Store } from '../../core/store/port.js';
import type { Runtime } from '../runtime/open-runtime.js';
import { type DoctorCheck, Warning } from './check.js';

const run = promisify(execFile);

/** The data folder and the key that unseals users' secrets: private to visor's user. */
export function permissionChecks(runtime: Runtime): DoctorCheck[] {
  const { config } = runtime;
  const keyFile = config.server.auth.keyFile;
  const key = isAbsolute(keyFile) ? keyFile : resolve(config.dataDir, keyFile);
  const open = (mode: number) => (mode & 0o077) !== 0;
  return [
    {
      name: 'data folder',
      fix: `create it, owned by visor's user, mode 0700: install -d -m 0700 ${config.dataDir}`,
      run: async () => {
        const info = await stat(config.dataDir).catch((error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') return undefined;
          throw error;
        });
        if (!info) return new Warning(`${config.dataDir} does not exist yet`, 'it is created 0700 on first use');
        if (!info.isDirectory()) throw new VisorError('config', `${config.dataDir} is not a folder`);
        const mode = (info.mode & 0o777).toString(8);
        if (open(info.mode)) return new Warning(`${config.dataDir} is mode ${mode}`, `chmod 700 ${config.dataDir}`);
        return `${config.dataDir} (mode ${mode})`;
      },
    },
    {
      name: 'secrets key',
      fix: `chmod 600 ${key}`,
      run: async () => {
        const info = await stat(key).catch(() => undefined);
        if (!info) return new Warning(`${key} does not exist yet`, 'it is created 0600 when the first user is added');
        if (open(info.mode))
          throw new VisorError('config', `${key} is mode ${(info.mode & 0o777).toString(8)}: others can read it`);
        return `${key} (mode 600)`;
      },
    },
  ];
}

export function catalogCheck(catalog: () => Promise<Catalog>): DoctorCheck {
  return {
    name: 'catalog',
    fix:
      'check catalog: in the config, that the server is up and the credentials right ' +
      '(schema: visor catalog migrate)',
    run: async () => {
      // Opening checks the schema version (refusing a newer one, migrating or refusing an older one).
      const opened = await catalog();
      const where = (opened as { where?: string }).where;
      const images = await opened.images.count({});
      return `${opened.kind}${where ? ` ${where}` : ''}: schema up to date, ${images} images`;
    },
  };
}

/** A small object written, read back, compared and deleted: the store works with these credentials. */
export function storeCheck(name: string, store: Store): DoctorCheck {
  return {
    name: `store ${name}`,
    fix: `check stores.${name} in the config: endpoint, bucket or folder, credentials and free space`,
    run: async (signal) => {
      if (!store.capabilities.writable) {
        await store.ping?.(signal);
        return `${store.kind}: references only (nothing to write)`;
      }
      const probe = randomBytes(4096);
      const sha256 = createHash('sha256').update(probe).digest('hex');
      const put = await store.put(`doctor-probe-${randomBytes(6).toString('hex')}`, Readable.from([probe]), {
        size: probe.length,
        expected: { sha256 },
        signal,
      });
      try {
        const got = await store.get(put.uri, { signal });
        const back = await buffer(got.stream);
        if (!back.equals(probe)) throw new VisorError('integrity', 'the object read back differs from the one written');
      } finally {
        await store.delete(put.uri);
      }
      return `${store.kind}: wrote, read back and deleted a 4 KiB object`;
    },
  };
}

export function qemuImgCheck(): DoctorCheck {
  return {
    name: 'qemu-img',
    fix: 'install it (Debian: apt-get install qemu-utils); without it images cannot be converted',
    run: async (signal) => {
      try {
        const { stdout } = await run('qemu-img', ['--version'], { signal });
        return stdout.split('\n')[0]!.trim();
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          return new Warning(
            'not installed',
            'apt-get install qemu-utils: clouds that need another format cannot be synced',
          );
        }
        throw error;
      }
    },
  };
}
