import { readFile } from 'node:fs/promises';

/**
 * What a real peer of the tests is: how to start it (or find it running), how to tell its
 * version, what it is for, and, for peers owned by one test run, how to stop it. The peers
 * themselves are listed in registry.ts; tests reach them through requirePeer (index.ts).
 */
export interface PeerDefinition<Coordinates> {
  /** Shown in the run's summary and in every message about the peer, e.g. "Keystone + Glance". */
  title: string;
  /** Which tests need it: shown in the summary, and a hint for whoever adds tests. */
  usedBy: string;
  /**
   * Starts the peer, or finds it running (shared peers must be reused, never restarted), and
   * returns what tests need to reach it (plain JSON: it crosses from the main vitest process
   * to the test workers). Throws `new PeerError('unavailable', ...)` when it cannot run on this
   * machine at all (not Debian, not root and packages missing); any other error is a failure.
   */
  start(): Promise<PeerStart<Coordinates>>;
  /**
   * Stops a peer this run started (run-scoped peers such as a PostgreSQL in a temporary folder).
   * Shared peers (Keystone + Glance, Swift) have none: other runs on the machine use them.
   */
  stop?(coordinates: Coordinates): Promise<void>;
}

export interface PeerStart<Coordinates> {
  coordinates: Coordinates;
  /** e.g. "keystone 2:22.0.2-0+deb12u3, glance-api 2:25.1.0-2+deb12u3" */
  version: string;
  /** True when it was already running (started by an earlier run) and is reused. */
  reused: boolean;
}

/** VISOR_TEST_REQUIRE_PEERS=1 (CI): a peer that cannot run is a failure, and so is any stray skip. */
export function peersRequired(): boolean {
  return process.env['VISOR_TEST_REQUIRE_PEERS'] === '1';
}

/** What became of one peer in this run; crosses processes as JSON. */
export type PeerOutcome =
  | { state: 'ready'; coordinates: unknown; version: string; reused: boolean; ms: number }
  | { state: 'unavailable' | 'failed'; reason: string; log: string; ms: number };

/**
 * Why a peer is not there. `unavailable`: it cannot run on this machine (a developer's laptop
 * may skip its tests; CI may not). `failed`: it should have run and did not (always an error).
 */
export class PeerError extends Error {
  constructor(
    readonly kind: 'unavailable' | 'failed',
    message: string,
    /** The start log (script output, the tails of the log files it names). */
    readonly log = '',
  ) {
    super(message);
    this.name = 'PeerError';
  }
}

/**
 * The output of a failed start script, plus the last lines of every log file it names
 * ("see /tmp/x/log/keystone.log"): what one needs to fix a peer that did not start.
 */
export async function startLog(output: string, lines = 40): Promise<string> {
  const parts = [tail(output, lines)];
  const files = new Set(output.match(/\/[\w./-]+\.log\b/g) ?? []);
  for (const file of [...files].slice(0, 4)) {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text !== undefined) parts.push(`--- ${file} (last lines) ---\n${tail(text, 20)}`);
  }
  return parts.filter((p) => p.length > 0).join('\n');
}

export function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
