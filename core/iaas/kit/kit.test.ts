import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordingLogger } from '../../../test/support/recording-logger.js';
import { isVisorError, VisorError, type ErrorKind } from '../../errors.js';
import { checkFormats, checkRetireMode } from './checks.js';
import { cleanUpAfter, removeQuietly } from './cleanup.js';
import { Deadline, inSeconds } from './deadline.js';
import { ignoredSeconds, seconds, warnIgnoredTimeout } from './options.js';
import { loadPem } from './pem.js';
import { pause, pollUntil } from './poll.js';

const caught = async (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );
const thrown = (fn: () => void): unknown => {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
};
const kindOf = (error: unknown): ErrorKind | undefined => (isVisorError(error) ? error.kind : undefined);
const words = { timeout: () => 'too slow', aborted: () => 'given up' };

describe('Deadline', () => {
  it('ends as a timeout when its time passes, with the signal aborted by a timeout VisorError', async () => {
    const deadline = new Deadline(30);
    try {
      expect(deadline.end).toBeUndefined();
      await new Promise((resolve) => setTimeout(resolve, 60));
      expect(deadline.end).toBe('timeout');
      expect(deadline.signal.aborted).toBe(true);
      expect(kindOf(deadline.signal.reason)).toBe('timeout');
      expect(deadline.remainingMs).toBe(0);
      const failure = deadline.failure(new Error('socket closed'), words);
      expect(failure).toMatchObject({ kind: 'timeout', message: 'too slow' });
      expect((failure.cause as Error).message).toBe('socket closed');
    } finally {
      deadline.dispose();
    }
  });

  it('ends as a cancellation when the caller aborts', () => {
    const caller = new AbortController();
    const deadline = new Deadline(60_000, caller.signal);
    caller.abort();
    expect(deadline.end).toBe('aborted');
    expect(deadline.failure(new VisorError('conflict', 'whatever the call threw'), words)).toMatchObject({
      kind: 'unavailable',
      message: 'given up',
    });
    deadline.dispose();
  });

  it("counts a caller that aborted because its own deadline passed as a timeout (the agent's action timeout)", () => {
    const caller = new AbortController();
    caller.abort(new VisorError('timeout', 'create of x took longer than 10s'));
    const deadline = new Deadline(60_000, caller.signal);
    expect(deadline.end).toBe('timeout');
    expect(deadline.failure(new Error('aborted'), words).kind).toBe('timeout');
    deadline.dispose();
  });

  it('passes errors through while it runs: VisorErrors as they are (or refined), others internal or mapped', () => {
    const deadline = new Deadline(60_000);
    const integrity = new VisorError('integrity', 'sha256 differs');
    expect(deadline.failure(integrity, words)).toBe(integrity);
    const refined = deadline.failure(integrity, {
      ...words,
      refine: (e) => new VisorError(e.kind, `${e.message} (hint)`),
    });
    expect(refined).toMatchObject({ kind: 'integrity', message: 'sha256 differs (hint)' });
    expect(deadline.failure(new TypeError('a bug'), words)).toMatchObject({ kind: 'internal', message: 'a bug' });
    const mapped = deadline.failure(new Error('EPIPE'), {
      ...words,
      otherwise: () => new VisorError('unavailable', 'source broke'),
    });
    expect(mapped.kind).toBe('unavailable');
    expect(deadline.remainingMs).toBeGreaterThan(59_000);
    deadline.dispose();
  });

  it("lets go of the caller's signal once disposed", () => {
    const caller = new AbortController();
    const deadline = new Deadline(60_000, caller.signal);
    deadline.dispose();
    caller.abort();
    expect(deadline.end).toBeUndefined();
  });

  it('says seconds in whole numbers, or tenths below ten', () => {
    expect([500, 2000, 9_950, 3_600_000].map(inSeconds)).toEqual([0.5, 2, 10, 3600]);
  });
});

describe('pollUntil', () => {
  it('reads until done, pausing between reads', async () => {
    const states = ['queued', 'saving', 'active'];
    let reads = 0;
    const value = await pollUntil({
      read: async () => states[reads++]!,
      done: (s) => s === 'active',
      intervalMs: 1,
      signal: new AbortController().signal,
    });
    expect(value).toBe('active');
    expect(reads).toBe(3);
  });

  it('ends with what done throws (a state that can never become good)', async () => {
    const error = await caught(
      pollUntil({
        read: async () => 'killed',
        done: () => {
          throw new VisorError('unavailable', 'killed in the cloud');
        },
        intervalMs: 1,
        signal: new AbortController().signal,
      }),
    );
    expect(error).toMatchObject({ kind: 'unavailable', message: 'killed in the cloud' });
  });

  it("ends with the signal's reason when the deadline passes while it waits", async () => {
    const deadline = new Deadline(40);
    const error = await caught(
      pollUntil({ read: async () => 'pending', done: () => false, intervalMs: 10, signal: deadline.signal }),
    );
    deadline.dispose();
    expect(kindOf(error)).toBe('timeout');
  });

  it('tries a read again after a retryable failure only when asked to, and says so', async () => {
    const failing = () => {
      let reads = 0;
      return async () => {
        if (reads++ === 0) throw new VisorError('unavailable', 'connection reset');
        return 'active';
      };
    };
    const signal = new AbortController().signal;
    const strict = await caught(pollUntil({ read: failing(), done: () => true, intervalMs: 1, signal }));
    expect(kindOf(strict)).toBe('unavailable');
    const told: unknown[] = [];
    const value = await pollUntil({
      read: failing(),
      done: () => true,
      intervalMs: 1,
      signal,
      retryReads: true,
      onReadFailure: (e) => told.push(e),
    });
    expect(value).toBe('active');
    expect(told).toHaveLength(1);
    const fatal = await caught(
      pollUntil({
        read: async () => {
          throw new VisorError('forbidden', 'no');
        },
        done: () => true,
        intervalMs: 1,
        signal,
        retryReads: true,
      }),
    );
    expect(kindOf(fatal)).toBe('forbidden');
  });

  it('pause throws at once on an aborted signal', async () => {
    const controller = new AbortController();
    controller.abort(new VisorError('conflict', 'lost the lease'));
    expect(await caught(pause(60_000, controller.signal))).toMatchObject({ kind: 'conflict' });
  });
});

describe('checkFormats and checkRetireMode', () => {
  const caps = {
    diskFormats: ['raw', 'qcow2'] as const,
    containerFormats: ['bare'] as const,
    retireModes: ['hide', 'delete'] as const,
  };

  it('refuses a disk or container format the cloud does not take as unsupported, naming what it takes', () => {
    expect(() => checkFormats('cloud', caps, { diskFormat: 'raw', containerFormat: 'bare' })).not.toThrow();
    expect(
      thrown(() => checkFormats('cloud', caps, { diskFormat: 'vmdk', containerFormat: 'bare' }, 'convert first')),
    ).toMatchObject({
      kind: 'unsupported',
      message: 'cloud: disk format vmdk is not accepted (accepted: raw, qcow2); convert first',
    });
    expect(thrown(() => checkFormats('cloud', caps, { diskFormat: 'raw', containerFormat: 'ova' }))).toMatchObject({
      kind: 'unsupported',
      message: 'cloud: container format ova is not accepted (accepted: bare)',
    });
  });

  it('refuses a retire mode the driver does not offer as unsupported, with the reason', () => {
    expect(() => checkRetireMode('cloud', caps, 'hide', 'x')).not.toThrow();
    expect(thrown(() => checkRetireMode('cloud', caps, 'disable', 'is not enabled here'))).toMatchObject({
      kind: 'unsupported',
      message: 'cloud: retiring by disable is not enabled here (retireModes: hide, delete)',
    });
  });
});

describe('cleanUpAfter', () => {
  const failure = new VisorError('timeout', 'create timed out', { details: { nativeId: 'n-1' } });

  it("says the leftover was deleted, keeping the failure's kind and details", async () => {
    const removed: string[] = [];
    const result = await cleanUpAfter(failure, async () => void removed.push('n-1'), { what: 'image n-1' });
    expect(removed).toEqual(['n-1']);
    expect(result).toMatchObject({
      kind: 'timeout',
      message: 'create timed out; image n-1 was deleted',
      details: { nativeId: 'n-1' },
    });
    expect(result.details?.['leftover']).toBeUndefined();
  });

  it('takes "not found" as deleted, and tries again while the cloud is busy with the object', async () => {
    expect(
      (await cleanUpAfter(failure, async () => Promise.reject(new VisorError('notFound', 'gone')), { what: 'x' }))
        .message,
    ).toMatch(/x was deleted$/);
    let tries = 0;
    const busy = async () => {
      if (++tries < 3) throw new VisorError('conflict', 'import still running');
    };
    expect((await cleanUpAfter(failure, busy, { what: 'x', backoffMs: 1 })).message).toMatch(/x was deleted$/);
    expect(tries).toBe(3);
  });

  it('says what is left when removing fails too, logs it, and never throws', async () => {
    const logger = recordingLogger();
    const result = await cleanUpAfter(
      failure,
      async () => Promise.reject(new VisorError('forbidden', 'policy says no')),
      { what: 'image n-1', logger },
    );
    expect(result).toMatchObject({
      kind: 'timeout',
      message: 'create timed out; deleting image n-1 failed too: policy says no',
      details: { leftover: 'image n-1' },
    });
    expect(logger.lines.map((l) => l.level)).toEqual(['error']);
    let tries = 0;
    const left = await removeQuietly(
      async () => {
        tries++;
        throw new VisorError('unavailable', 'down');
      },
      { what: 'x', attempts: 2, backoffMs: 1 },
    );
    expect(left?.kind).toBe('unavailable');
    expect(tries).toBe(2);
  });

  it("gives the removal a signal of its own (the call's deadline is usually what ran out)", async () => {
    let signal: AbortSignal | undefined;
    await cleanUpAfter(
      failure,
      async (s) => {
        signal = s;
      },
      { what: 'x' },
    );
    expect(signal?.aborted).toBe(false);
  });
});

describe('loadPem', () => {
  let dir: string;
  const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const key = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-kit-pem-'));
    await writeFile(join(dir, 'ca.pem'), cert);
    await writeFile(join(dir, 'key.pem'), key);
    await writeFile(join(dir, 'junk.pem'), 'not a pem');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  const option = () => ({ option: 'caBundle', cloud: 'site', dataDir: dir });

  it('reads a file relative to the data directory, or an absolute one', async () => {
    expect(await loadPem('ca.pem', { ...option(), certificate: true })).toBe(cert);
    expect(await loadPem(join(dir, 'key.pem'), option())).toBe(key);
  });

  it('takes inline PEM text only where the option allows it', async () => {
    expect(await loadPem(key, { ...option(), inline: true })).toBe(key);
    expect(kindOf(await caught(loadPem(key, option())))).toBe('config');
  });

  it('refuses a missing file, or one without the PEM block, as a config error naming option and path', async () => {
    const missing = await caught(loadPem('nope.pem', option()));
    expect(missing).toMatchObject({
      kind: 'config',
      message: expect.stringMatching(/^clouds\.site: cannot read caBundle .*nope\.pem: /),
    });
    const junk = await caught(loadPem('junk.pem', { ...option(), certificate: true }));
    expect(junk).toMatchObject({
      kind: 'config',
      message: `clouds.site: caBundle ${join(dir, 'junk.pem')} holds no PEM certificate`,
    });
    expect(kindOf(await caught(loadPem('key.pem', { ...option(), certificate: true })))).toBe('config');
  });
});

describe('options', () => {
  it('seconds: more than 0, at most max', () => {
    expect(seconds(10).safeParse(0.05).success).toBe(true);
    expect(seconds(10).safeParse(0).success).toBe(false);
    expect(seconds(10).safeParse(11).success).toBe(false);
  });

  it('an ignored timeout still loads, and the plugin warns that it does nothing', () => {
    expect(ignoredSeconds().parse(undefined)).toBeUndefined();
    expect(ignoredSeconds().parse(3600)).toBe(3600);
    const logger = recordingLogger();
    warnIgnoredTimeout(logger, 'site', 'activeWait', undefined);
    expect(logger.lines).toEqual([]);
    warnIgnoredTimeout(logger, 'site', 'activeWait', 3600);
    expect(logger.lines).toEqual([
      {
        level: 'warn',
        message: 'clouds.site.options.timeouts.activeWait is ignored: the deadline of a create is sync.timeouts.action',
        meta: { option: 'timeouts.activeWait' },
      },
    ]);
  });
});
