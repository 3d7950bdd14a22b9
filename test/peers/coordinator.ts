import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PeerError, type PeerDefinition, type PeerOutcome } from './peer.js';
import { peerRegistry, type PeerName } from './registry.js';

/**
 * Starts each peer at most once per test run, in the main vitest process, when the first test
 * asks for it, and remembers what became of it. Test workers (forks) ask over HTTP on loopback
 * (index.ts): no file locks, and a peer that takes minutes to start is waited for once by all.
 * The run's reporter reads the outcomes (peerReport) for its summary.
 */
export class PeerCoordinator {
  private readonly outcomes = new Map<PeerName, Promise<PeerOutcome>>();
  private readonly settled = new Map<PeerName, PeerOutcome>();
  private readonly askedBy = new Map<PeerName, Set<string>>();
  private server: Server | undefined;

  constructor(private readonly registry: Record<PeerName, PeerDefinition<unknown>> = peerRegistry) {}

  isPeer(name: string): name is PeerName {
    return Object.hasOwn(this.registry, name);
  }

  /** The peer's outcome, starting it on the first call; `file` is the test file that asks. */
  ensure(name: PeerName, file?: string): Promise<PeerOutcome> {
    if (file) this.askedBy.set(name, (this.askedBy.get(name) ?? new Set()).add(file));
    let outcome = this.outcomes.get(name);
    if (!outcome) {
      outcome = startPeer(this.registry[name]).then((o) => {
        this.settled.set(name, o);
        return o;
      });
      this.outcomes.set(name, outcome);
    }
    return outcome;
  }

  /** Serves `GET /peers/<name>?file=<test file>` on a free loopback port; returns its URL. */
  async listen(): Promise<string> {
    const server = createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      const name = decodeURIComponent(url.pathname.replace(/^\/peers\//, ''));
      const reply = (status: number, body: unknown) =>
        response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (request.method !== 'GET' || !url.pathname.startsWith('/peers/') || !this.isPeer(name)) {
        reply(404, { error: `no peer named "${name}" in test/peers/registry.ts` });
        return;
      }
      this.ensure(name, url.searchParams.get('file') ?? undefined).then((outcome) => reply(200, outcome));
    });
    // A first start may take many minutes (apt-get, Keystone's db_sync): no server timeouts.
    server.requestTimeout = 0;
    server.headersTimeout = 0;
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    this.server = server;
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Per registered peer: its outcome (undefined when no test asked for it) and who asked. */
  report(): PeerReport[] {
    return (Object.keys(this.registry) as PeerName[]).map((name) => ({
      name,
      title: this.registry[name].title,
      usedBy: this.registry[name].usedBy,
      outcome: this.settled.get(name),
      pending: this.outcomes.has(name) && !this.settled.has(name),
      files: [...(this.askedBy.get(name) ?? [])].sort(),
    }));
  }

  /** Stops the peers this run owns (those with a `stop`); shared peers are left running. */
  async close(): Promise<void> {
    const server = this.server;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
    const stops = [...this.settled].map(async ([name, outcome]) => {
      if (outcome.state === 'ready') await this.registry[name].stop?.(outcome.coordinates);
    });
    await Promise.all(stops);
  }
}

export interface PeerReport {
  name: PeerName;
  title: string;
  usedBy: string;
  outcome: PeerOutcome | undefined;
  pending: boolean;
  files: string[];
}

/** Runs one peer's start and turns whatever happens into an outcome; never throws. */
export async function startPeer(definition: PeerDefinition<unknown>): Promise<PeerOutcome> {
  const started = Date.now();
  try {
    const { coordinates, version, reused } = await definition.start();
    return { state: 'ready', coordinates, version, reused, ms: Date.now() - started };
  } catch (error) {
    const e =
      error instanceof PeerError
        ? error
        : new PeerError('failed', (error as Error).message ?? String(error), (error as Error).stack ?? '');
    return { state: e.kind, reason: e.message, log: e.log, ms: Date.now() - started };
  }
}

/** The coordinator of the run in this process, for the reporter (same process, other module graph). */
const key = Symbol.for('visor.test.peer-coordinator');

export function setRunCoordinator(coordinator: PeerCoordinator | undefined): void {
  (globalThis as Record<symbol, unknown>)[key] = coordinator;
}

export function runCoordinator(): PeerCoordinator | undefined {
  return (globalThis as Record<symbol, unknown>)[key] as PeerCoordinator | undefined;
}
