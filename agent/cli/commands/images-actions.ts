import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import { VisorClient, type WireImage } from '../../client/client.js';
import { loadClientSettings } from '../../client/credentials.js';
import { humanSize, keyValueBlock, orderDetail } from '../format.js';
import { print, printJson, table, type CliIo } from '../io.js';
import { VerifiedFileSink, VerifiedStreamSink } from '../download-sink.js';
import { progressBar, type Progress } from '../progress.js';
import { parseKeyValues, type ClientOptions } from './images.js';

interface ListOptions extends ClientOptions {
  query?: string;
  sort?: string;
  dir?: string;
  limit?: string;
}

function clientFor(options: ClientOptions, io: CliIo): VisorClient {
  if ((options.address === undefined) !== (options.port === undefined) && options.url === undefined) {
    if (options.port !== undefined && !/^\d{1,5}$/.test(options.port)) throw new VisorError('invalidInput', `--port must be a number, got "${options.port}"`);
  }
  const url = options.url ?? (options.address || options.port ? `http://${options.address ?? '127.0.0.1'}:${options.port ?? '4568'}` : undefined);
  return new VisorClient(loadClientSettings(io.env, { profile: options.profile, url }));
}

function listQuery(options: ListOptions): Record<string, string> {
  const query: Record<string, string> = {};
  if (options.query) for (const [k, v] of new URLSearchParams(options.query)) query[k] = v;
  if (options.sort) query['sort'] = options.sort;
  if (options.dir) query['dir'] = options.dir;
  if (options.limit) query['limit'] = options.limit;
  return query;
}

/** Dispatches a client verb; commander passes (...arguments, options, command). */
export async function runImageCommand(name: string, args: unknown[], io: CliIo): Promise<void> {
  const command = args[args.length - 1] as Command;
  const options = command.opts<ListOptions & { file?: string; save?: string; output?: string; force?: boolean }>();
  const positional = args.slice(0, -2);
  const client = clientFor(options, io);
  switch (name) {
    case 'brief':
    case 'detail': {
      const images = await client.list(name, listQuery(options));
      if (options.json) printJson(io, images);
      else if (name === 'brief') {
        print(io, table(['ID', 'NAME', 'ARCHITECTURE', 'TYPE', 'FORMAT', 'STORE', 'SIZE'], images.map((i) => [String(i['_id']), String(i['name']), String(i['architecture']), String(i['type'] ?? '-'), String(i['format'] ?? '-'), String(i['store'] ?? '-'), humanSize(i['size'])])));
      } else print(io, images.map((i) => keyValueBlock(orderDetail(i))).join('\n\n') || '(no images)');
      return;
    }
    case 'head': {
      const meta = await client.head(String(positional[0]));
      if (options.json) printJson(io, meta);
      else print(io, keyValueBlock(orderDetail(meta)));
      return;
    }
    case 'add':
    case 'update': {
      const id = name === 'update' ? String(positional[0]) : undefined;
      const pairs = (name === 'update' ? positional[1] : positional[0]) as string[] | undefined;
      const meta = parseKeyValues(pairs ?? []);
      let image: WireImage;
      if (options.file) {
        const path = resolve(io.cwd, options.file);
        const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
          throw new VisorError('invalidInput', `cannot read ${options.file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
        });
        if (!info.isFile()) throw new VisorError('invalidInput', `${options.file} is not a file`);
        const bar = await progressBar(io, 'upload  ', info.size, !options.json);
        try {
          const source = { stream: createReadStream(path), size: info.size, onProgress: (n: number) => bar.update(n) };
          image = id ? await client.update(id, meta, source) : await client.add(meta, source);
        } finally {
          bar.stop();
        }
      } else {
        if (name === 'update' && Object.keys(meta).length === 0) throw new VisorError('invalidInput', 'nothing to update: give key=value pairs and/or --file');
        image = id ? await client.update(id, meta) : await client.add(meta);
      }
      if (options.json) printJson(io, image);
      else print(io, `${name === 'add' ? 'Registered' : 'Updated'} image ${String(image['_id'])}\n${keyValueBlock(orderDetail(image))}`);
      return;
    }
    case 'delete': {
      const deleted: WireImage[] = [];
      for (const id of positional[0] as string[]) deleted.push(await client.delete(id));
      if (options.json) printJson(io, deleted);
      else for (const image of deleted) print(io, `Deleted image ${String(image['_id'])} (${String(image['name'])})`);
      return;
    }
    case 'get':
      await download(client, String(positional[0]), options, io);
      return;
    default:
      throw new VisorError('internal', `unknown command ${name}`);
  }
}

async function download(client: VisorClient, id: string, options: { save?: string; output?: string; force?: boolean; json?: boolean }, io: CliIo): Promise<void> {
  const toStdout = options.output === '-';
  // Set by the callback below (so not narrowed to their initial undefined).
  let sink = undefined as VerifiedFileSink | VerifiedStreamSink | undefined;
  let target = undefined as string | undefined;
  let bar = undefined as Progress | undefined;
  try {
    // The file name and the checks come with the answer's headers; the file is opened only then.
    await client.downloadTo(id, async ({ size, meta }) => {
      const named = () => join(options.save ?? '.', safeFileName(meta['name'] ?? id, meta['format']));
      target = toStdout ? undefined : resolve(io.cwd, options.output ?? named());
      if (target && !options.force && (await stat(target).then(() => true, () => false))) {
        throw new VisorError('conflict', `${target} exists; use --force to overwrite it`);
      }
      const listed = meta['size'] === undefined ? undefined : Number(meta['size']);
      if (listed !== undefined && listed !== size) {
        const why = `the server sends ${size} bytes of image ${id}, whose catalog size is ${listed}`;
        throw new VisorError('integrity', why);
      }
      const progress = await progressBar(io, 'download', size, !options.json && !toStdout);
      bar = progress;
      const onProgress = (n: number) => progress.update(n);
      const sha256 = meta['sha256'];
      if (target) sink = await VerifiedFileSink.create(target, size, sha256, onProgress);
      else sink = new VerifiedStreamSink(io.stdout, size, sha256, onProgress);
      return sink;
    });
    await sink!.finish();
  } catch (error) {
    await sink?.discard();
    throw error;
  } finally {
    bar?.stop();
  }
  if (!target) return;
  const { size, sha256 } = sink!;
  if (options.json) printJson(io, { id, file: target, size, sha256: sha256 ?? null });
  const checked = sha256 ? 'sha256 verified' : 'no checksum in the catalog to verify';
  if (!options.json) print(io, `Saved image ${id} to ${target} (${humanSize(size)}, ${checked})`);
}

function safeFileName(name: string, format: string | undefined): string {
  const base = name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'image';
  return format && !base.endsWith(`.${format}`) ? `${base}.${format}` : base;
}
