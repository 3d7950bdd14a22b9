import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the server sends for a path: a body, or a status to fail with. */
export type Served = Buffer | { status: number };

/**
 * A real HTTP server on loopback serving documents and image files from a map, with ranges
 * (206 + Content-Range) and an optional rate per response, like a mirror would.
 */
export class FileServer {
  readonly files = new Map<string, Served>();
  readonly requests: { path: string; range?: string }[] = [];
  /** Cut a response after this many bytes (a dropped connection), once per path. */
  readonly cutAfter = new Map<string, number>();
  #server: Server | undefined;
  #port = 0;

  get base(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  url(path: string): string {
    return `${this.base}${path}`;
  }

  async start(): Promise<this> {
    this.#server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      this.requests.push({ path, ...(req.headers.range ? { range: req.headers.range } : {}) });
      const served = this.files.get(path);
      if (!served) {
        res.writeHead(404).end();
        return;
      }
      if (!Buffer.isBuffer(served)) {
        res.writeHead(served.status).end();
        return;
      }
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      let body = served;
      if (range) {
        const start = Number(range[1]);
        const end = range[2] ? Number(range[2]) : served.length - 1;
        if (start >= served.length) {
          res.writeHead(416, { 'content-range': `bytes */${served.length}` }).end();
          return;
        }
        body = served.subarray(start, end + 1);
        res.writeHead(206, { 'content-length': body.length, 'content-range': `bytes ${start}-${end}/${served.length}` });
      } else {
        res.writeHead(200, { 'content-length': body.length, 'accept-ranges': 'bytes' });
      }
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      const cut = this.cutAfter.get(path);
      if (cut !== undefined && !range) {
        this.cutAfter.delete(path);
        res.write(body.subarray(0, cut), () => res.destroy());
        return;
      }
      res.end(body);
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.#port = (this.#server!.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}
