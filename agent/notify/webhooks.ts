import { createHmac, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import axios from '../../core/wire/axios.js';
import type { ActionRecord, RunRecord } from '../../core/catalog/port.js';
import type { Logger } from '../../core/logging/logger.js';

export interface WebhookConfig {
  url: string;
  /** HMAC-SHA256 key: receivers check `X-Visor-Signature` with it. */
  secret: string;
  /** Event names to send (all when absent): image.imported, image.failed, image.retired, run.failed. */
  events?: readonly string[] | undefined;
}

export interface WebhookEvent {
  event: string;
  /** The run (a cloud, or `source:<name>`) the event happened in. */
  target: string;
  runId: string;
  at: string;
  imageId?: string;
  nativeId?: string;
  name?: string;
  detail?: string;
  error?: { kind: string; message: string };
}

export interface DeliveryOptions {
  attempts?: number;
  /** First backoff; doubled on each retry. */
  backoffMs?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
}

const eventOf: Partial<Record<ActionRecord['result'], string>> = {
  imported: 'image.imported',
  created: 'image.imported',
  replaced: 'image.imported',
  failed: 'image.failed',
  retired: 'image.retired',
};

/** The lifecycle events of a finished run: images imported (into the catalog or a cloud), failed, retired. */
export function runEvents(run: RunRecord): WebhookEvent[] {
  const at = run.finishedAt ?? new Date().toISOString();
  const events: WebhookEvent[] = run.actions.flatMap((a) => {
    const event = a.action === 'webhook' ? undefined : eventOf[a.result];
    if (!event) return [];
    return [
      {
        event,
        target: run.target,
        runId: run.id,
        at,
        ...(a.imageId ? { imageId: a.imageId } : {}),
        ...(a.nativeId ? { nativeId: a.nativeId } : {}),
        ...(a.name ? { name: a.name } : {}),
        ...(a.detail ? { detail: a.detail } : {}),
        ...(a.error ? { error: a.error } : {}),
      },
    ];
  });
  if (run.status === 'failed')
    events.push({
      event: 'run.failed',
      target: run.target,
      runId: run.id,
      at,
      ...(run.error ? { detail: run.error } : {}),
    });
  return events;
}

/** `sha256=<hex>` of `<timestamp>.<body>`: the timestamp is signed too, so a captured call cannot be replayed later. */
export function signPayload(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * Sends a run's events to each webhook (one POST per hook with every event it wants), signed
 * with HMAC-SHA256, retried with exponential backoff on network errors, 429 and 5xx. Returns one
 * action record per hook for the run's history; a webhook never fails the run.
 */
export async function deliverWebhooks(
  hooks: readonly WebhookConfig[],
  run: RunRecord,
  logger: Logger,
  options: DeliveryOptions = {},
): Promise<ActionRecord[]> {
  const events = runEvents(run);
  const records: ActionRecord[] = [];
  for (const hook of hooks) {
    const wanted = events.filter((e) => !hook.events || hook.events.includes(e.event));
    if (wanted.length === 0) continue;
    records.push(await deliver(hook, wanted, logger, options));
  }
  return records;
}

async function deliver(
  hook: WebhookConfig,
  events: WebhookEvent[],
  logger: Logger,
  options: DeliveryOptions,
): Promise<ActionRecord> {
  const attempts = options.attempts ?? 5;
  const started = performance.now();
  const body = JSON.stringify({ id: randomUUID(), events });
  const where = safeUrl(hook.url);
  let last = '';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const timestamp = String(Math.floor(Date.now() / 1000));
    try {
      const response = await axios.post(hook.url, body, {
        headers: {
          'content-type': 'application/json',
          'user-agent': 'visor-webhooks',
          'x-visor-timestamp': timestamp,
          'x-visor-signature': signPayload(hook.secret, timestamp, body),
        },
        timeout: options.timeoutMs ?? 10_000,
        maxRedirects: 0,
        validateStatus: () => true,
        proxy: false,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (response.status >= 200 && response.status < 300) {
        const ms = Math.round(performance.now() - started);
        return {
          action: 'webhook',
          result: 'created',
          detail: `${where}: ${events.length} event(s) delivered`,
          attempts: attempt,
          ms,
        };
      }
      last = `answered ${response.status}`;
      if (response.status < 500 && response.status !== 429) break;
    } catch (error) {
      last = (error as Error).message;
      if (options.signal?.aborted) break;
    }
    if (attempt < attempts)
      await sleep(
        (options.backoffMs ?? 1000) * 2 ** (attempt - 1),
        undefined,
        options.signal ? { signal: options.signal } : {},
      ).catch(() => undefined);
  }
  logger.warn('webhook not delivered', { url: where, reason: last });
  return {
    action: 'webhook',
    result: 'failed',
    detail: `${where}: ${events.length} event(s)`,
    error: { kind: 'unavailable', message: `webhook ${where} ${last}` },
    attempts,
    ms: Math.round(performance.now() - started),
  };
}

function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(bad URL)';
  }
}
