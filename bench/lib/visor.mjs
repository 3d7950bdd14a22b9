// visor as users run it: a build's CLI (dist/), a config file, `visor serve` in its own process,
// the API client, and signed requests for curl and autocannon. `loadVisor(dist)` binds all of it
// to one build, so that two builds (before/after a change) can be measured in the same run.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A visor.yaml: SQLite catalog + file store under `dir`/data, and the Glance peer as cloud `glance`, syncing images
 * tagged `tag`.
 */
export async function writeConfig(dir, peer, { agentId, tag, prefix, file = 'visor.yaml' }) {
  const path = join(dir, file);
  const a = peer.admin;
  await writeFile(
    path,
    `dataDir: ${join(dir, 'data')}
agent: { id: ${agentId} }
clouds:
  glance:
    adapter: glance
    options:
      authUrl: ${peer.authUrl}
      region: ${peer.region}
      auth: { type: password, username: ${a.username}, password: '${a.password}', projectName: ${a.project_name} }
    sync:
      selector: { tags: [${tag}], access: [public, private] }
      naming: '${prefix}{name}'
      retire: { mode: delete }
`,
  );
  return path;
}

const curlHeaders = (headers) => Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);

export async function loadVisor(dist) {
  const { CONTENT_HASH_HEADER, signRequest, UNSIGNED_PAYLOAD } = await import(`${dist}/core/auth/signing.js`);
  const { VisorClient } = await import(`${dist}/agent/client/client.js`);
  // The command as installed (the bundle); a build from before the bundle has only the modules.
  const bin = existsSync(`${dist}/bundle/cli.js`) ? `${dist}/bundle/cli.js` : `${dist}/agent/cli/main.js`;

  /** Signed headers for a request (a fresh date and nonce each call). */
  const signedHeaders = (user, method, pathWithQuery, headers = {}) => {
    const [path, query = ''] = pathWithQuery.split('?');
    return signRequest(user.accessKey, user.secretKey, {
      method,
      path,
      query: [...new URLSearchParams(query)],
      headers: { ...headers },
    });
  };

  return {
    dist,
    bin,
    signedHeaders,

    async addUser(config) {
      const { stdout } = await run(process.execPath, [bin, 'users', 'add', 'bench', '--admin', '-c', config, '--json']);
      return JSON.parse(stdout);
    },

    /**
     * `visor serve` in its own process (so that its RSS and CPU are its own); resolves once it
     * listens. `nodeArgs` (e.g. --cpu-prof, --trace-gc) go to node before the script.
     */
    async startServer(config, { nodeArgs = [] } = {}) {
      const child = spawn(process.execPath, [...nodeArgs, bin, 'serve', '-c', config, '--port', '0'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let url;
      for await (const line of createInterface({ input: child.stderr })) {
        const match = /"url":"(http:[^"]+)"/.exec(line);
        if (match) {
          url = match[1];
          break;
        }
      }
      if (!url) throw new Error('visor serve exited before it listened');
      // Keep draining its log (one line per request) so that it never blocks on a full pipe.
      child.stderr.resume();
      return {
        url,
        pid: child.pid,
        stop: () =>
          new Promise((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once('exit', resolve);
            child.kill('SIGTERM');
          }),
      };
    },

    client: (url, user) =>
      new VisorClient({ url, accessKey: user.accessKey, secretKey: user.secretKey, source: 'bench' }),

    /**
     * The same upload as the API client's, sent by curl (no client-side hashing): the server's side
     * alone. Every body is signed since issue 15: `sha256` is the file's, known from an earlier
     * upload of it (UNSIGNED-PAYLOAD only for builds from before, which take it).
     */
    async curlIngest(url, user, file, size, meta, sha256) {
      const headers = {
        'content-type': 'application/octet-stream',
        'content-length': String(size),
        [CONTENT_HASH_HEADER]: sha256 ?? UNSIGNED_PAYLOAD,
      };
      for (const [k, v] of Object.entries(meta)) headers[`x-image-meta-${k}`] = String(v);
      const signed = signedHeaders(user, 'POST', '/images', headers);
      delete signed['content-length'];
      const { stdout } = await run(
        'curl',
        ['-sS', '-f', '-X', 'POST', ...curlHeaders(signed), '-T', file, `${url}/images`],
        { maxBuffer: 16 * 1024 * 1024 },
      );
      return JSON.parse(stdout).image;
    },

    async curlDownload(url, user, id) {
      const path = `/images/${id}`;
      await run('curl', [
        '-sS',
        '-f',
        '-o',
        '/dev/null',
        ...curlHeaders(signedHeaders(user, 'GET', path, { accept: 'application/json' })),
        `${url}${path}`,
      ]);
    },
  };
}
