import { pipeline } from 'node:stream';
import type { Readable, Transform } from 'node:stream';
import { isVisorError, type VisorError } from '../errors.js';
import { InspectingStream } from '../formats/stream-inspector.js';
import type { InspectionReport } from '../formats/types.js';
import type { ContainerFormat, DiskFormat } from '../image/model.js';
import type { PutOptions, PutResult, Store } from './port.js';
import { storeReader } from './store-reader.js';

export interface InspectedPutOptions extends PutOptions {
  /** The disk format the image claims: the content must be that (undefined: detected). */
  declared?: DiskFormat | undefined;
  container?: ContainerFormat | undefined;
  /** Streams the body passes through before it is inspected and stored (a byte limit). */
  through?: Transform[];
}

export interface InspectedPutResult extends PutResult {
  inspection: InspectionReport;
}

/**
 * Stores `body` in `store` only if it is a safe image of the declared format: inspected as it
 * streams in (core/formats/stream-inspector.ts), refused before the store commits it when the
 * bytes inspection needs were kept on the way, else inspected right after reading those few
 * ranges back — and then removed on refusal. Either way nothing of a refused image stays, and
 * the caller (who keeps its catalog record out of reach meanwhile) gets the inspector's error.
 */
export async function putInspected(
  store: Store,
  key: string,
  body: Readable,
  options: InspectedPutOptions = {},
): Promise<InspectedPutResult> {
  const { declared, container, through = [], ...put } = options;
  const tap = new InspectingStream({
    ...(declared ? { declared } : {}),
    ...(container ? { container } : {}),
    ...(put.size !== undefined ? { size: put.size } : {}),
  });
  // Errors anywhere destroy every stream; the store sees them as a failed source and keeps nothing.
  const source = pipeline([body, ...through, tap], () => undefined) as unknown as Readable;
  // A refusal (or a limit) raised on the way in is the error to report, however the store wraps
  // the failure of its source.
  let refusal: VisorError | undefined;
  for (const stream of [...through, tap]) {
    stream.once('error', (error) => (refusal ??= isVisorError(error) ? error : undefined));
  }
  let stored: PutResult;
  try {
    stored = await store.put(key, source, put);
  } catch (error) {
    source.destroy();
    const verdict = tap.settled();
    throw refusal ?? (verdict?.state === 'refused' ? verdict.error : error);
  }
  try {
    const inspection = await tap.inspect(storeReader(store, stored.uri, stored.size, put.signal));
    return { ...stored, inspection };
  } catch (error) {
    await store.delete(stored.uri).catch(() => undefined);
    throw error;
  }
}
