import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { VisorError } from '../core/errors.js';
import { ContentPublisher } from './content-publisher.js';
import { handleContent } from './content-route.js';

export interface ContentServer {
  publisher: ContentPublisher;
  url: string;
  close(): Promise<void>;
}

/**
 * The `/agent/content/<token>` route alone (the handler of content-route.ts on a bare node:http
 * server), for one-shot commands (`visor sync`, `visor migrate`) that run without the agent's API
 * server, so that clouds fetching images by URL (OpenNebula in remote mode) can still get them.
 * It listens on `agent.publicUrl`'s port, or on a free port of 127.0.0.1 when none is configured
 * (enough for a cloud on the same host).
 */
export async function startContentServer(publicUrl: string | undefined): Promise<ContentServer> {
  let base = publicUrl;
  const publisher = new ContentPublisher(() => base!);
  const server: Server = createServer((req, res) => handleContent(publisher, req, res));
  const listen = publicUrl ? new URL(publicUrl) : undefined;
  const port = listen ? Number(listen.port || (listen.protocol === 'https:' ? 443 : 80)) : 0;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, listen ? '0.0.0.0' : '127.0.0.1', resolve);
    });
  } catch (error) {
    throw new VisorError(
      'unavailable',
      `cannot serve images for clouds on port ${port} (agent.publicUrl): ${(error as Error).message}; ` +
        `is \`visor agent\` running? Then use \`visor trigger\``,
      { cause: error },
    );
  }
  base ??= `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    publisher,
    url: base,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
