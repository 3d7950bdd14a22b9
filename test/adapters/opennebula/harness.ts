import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Deserializer, XmlRpcFault } from '@foxglove/xmlrpc';
import { expect } from 'vitest';
import type { ContentSource } from '../../../core/iaas/port.js';
import { OpenNebulaDriver, type OpenNebulaDriverOptions } from '../../../adapters/opennebula/driver.js';
import { bufferContent } from '../../support/content.js';
import type { OpenNebulaDouble } from '../../doubles/opennebula/index.js';
import { validateOneDocuments } from '../../doubles/opennebula/xsd.js';

/** A driver against a double, with timings small enough for tests. */
export function driverFor(
  double: OpenNebulaDouble,
  overrides: Partial<OpenNebulaDriverOptions> = {},
): OpenNebulaDriver {
  return new OpenNebulaDriver({
    endpoint: double.endpoint,
    username: 'oneadmin',
    password: 'opennebula',
    datastore: 'default',
    mode: 'remote',
    imageType: 'OS',
    persistent: false,
    ownership: 'mine',
    pageSize: 0,
    requestTimeoutMs: 5_000,
    pollIntervalMs: 10,
    retire: { expiredPrefix: 'EXPIRED_', chmod: '600' },
    maxResponseBytes: 64 * 1024 * 1024,
    ...overrides,
  });
}

export interface ContentServer {
  /** Serves `data` at a fresh URL (the agent's one-time token stands in as the path). */
  serve(data: Buffer, options?: { status?: number }): string;
  /** Content whose URL serves exactly its bytes, or other bytes (`served`) to make it lie. */
  content(data: Buffer, options?: { served?: Buffer; lie?: boolean; status?: number }): ContentSource;
  requests: string[];
  close(): Promise<void>;
}

/** The agent's side of remote mode: an HTTP server oned (the double) fetches PATH from. */
export async function startContentServer(): Promise<ContentServer> {
  const files = new Map<string, { data: Buffer; status: number }>();
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const file = files.get(req.url ?? '');
    if (!file) return void res.writeHead(404).end();
    if (file.status !== 200) return void res.writeHead(file.status).end('refused');
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': file.data.length });
    if (req.method === 'HEAD') return void res.end();
    res.end(file.data);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const serve = (data: Buffer, options: { status?: number } = {}) => {
    const path = `/content/${randomBytes(12).toString('hex')}`;
    files.set(path, { data, status: options.status ?? 200 });
    return base + path;
  };
  return {
    serve,
    content: (data, options = {}) => {
      const url = serve(options.served ?? data, options.status !== undefined ? { status: options.status } : {});
      return bufferContent(data, 'raw', { url, ...(options.lie ? { lie: true } : {}) });
    },
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The check every test file ends with: each response body any double sent is an XML-RPC
 * method response framed as xmlrpc-c frames it, and each document inside validates against the
 * official XSDs.
 */
export async function expectValidDocuments(doubles: readonly OpenNebulaDouble[]): Promise<number> {
  const bodies = doubles.flatMap((d) => d.responses.map((r) => r.body));
  for (const body of bodies) {
    expect(body.startsWith('<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n')).toBe(true);
    const value: unknown = await new Deserializer()
      .deserializeMethodResponse(body)
      .catch((e: unknown) => (e instanceof XmlRpcFault ? 'fault' : e));
    expect(value === 'fault' || Array.isArray(value), String(value)).toBe(true);
  }
  const documents = doubles.flatMap((d) => d.responses.flatMap((r) => r.documents));
  expect(documents.length, 'the doubles sent no document to check').toBeGreaterThan(0);
  const report = await validateOneDocuments(documents);
  expect(report.errors).toEqual([]);
  return report.checked;
}
