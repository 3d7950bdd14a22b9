import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { VisorError } from '../errors.js';
import { createLogger } from './logger.js';
import { collectSecrets, SecretRegistry } from './redact.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { lines, stream };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('logging', () => {
  it('writes JSON lines when not on a terminal, with child context', async () => {
    const { lines, stream } = capture();
    const logger = createLogger({ stream, isTTY: false }).child({ target: 'prod' }).child({ run: 7 });
    logger.info('sync started', { images: 3 });
    await flush();
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: 'info',
      message: 'sync started',
      target: 'prod',
      run: 7,
      images: 3,
    });
    expect(JSON.parse(lines[0]!).timestamp).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('writes readable lines on a terminal', async () => {
    const { lines, stream } = capture();
    createLogger({ stream, isTTY: true }).warn('disk almost full', { free: '1G' });
    await flush();
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} .*warn.* disk almost full free=1G$/);
  });

  it('respects the level', async () => {
    const { lines, stream } = capture();
    const logger = createLogger({ stream, isTTY: false, level: 'warn' });
    logger.info('hidden');
    logger.debug('hidden too');
    logger.error('shown');
    await flush();
    expect(lines.map((l) => JSON.parse(l).message)).toEqual(['shown']);
  });

  it('never writes a secret: not under secret keys, not in messages, errors, URLs or nested metadata', async () => {
    const secrets = new SecretRegistry();
    collectSecrets(
      {
        clouds: {
          prod: {
            options: { password: 'hunter2-glance', applicationCredentialSecret: 'app-cred-s3cr3t', url: 'http://x' },
          },
        },
      },
      secrets,
    );
    secrets.add('AKIA-secret-key-value');
    const { lines, stream } = capture();
    const logger = createLogger({ stream, isTTY: false, secrets });
    logger.info('auth with password hunter2-glance failed');
    logger.warn('request', {
      headers: { 'X-Auth-Token': 'gAAAAAB-token-value', Authorization: 'VISOR ak:sig' },
      body: { auth: { password: 'other-pw-1234' } },
    });
    logger.error('upload failed', {
      error: new VisorError('auth', 'rejected secret AKIA-secret-key-value', {
        cause: new Error('app-cred-s3cr3t in cause'),
      }),
    });
    logger.info('fetching', {
      url: 'https://user:pa%24%24word@example.com/path',
      location: 'http://u:hunter2-glance@h/',
    });
    logger.child({ secretKey: 'child-secret-9999' }).info('child context');
    await flush();
    const text = lines.join('\n');
    for (const secret of [
      'hunter2-glance',
      'app-cred-s3cr3t',
      'AKIA-secret-key-value',
      'gAAAAAB-token-value',
      'ak:sig',
      'other-pw-1234',
      'pa%24%24word',
      'child-secret-9999',
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('***');
    expect(lines).toHaveLength(5);
    expect(JSON.parse(lines[2]!).error).toMatchObject({ kind: 'auth', message: 'rejected secret ***' });
  });

  describe('errors: one line with the cause chain, stacks only at debug', () => {
    const failure = () =>
      new VisorError('unavailable', 'Glance at http://glance:9292: uploading the image failed', {
        cause: Object.assign(
          new Error('socket hang up', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) }),
          { code: 'ERR_SOCKET' },
        ),
      });

    it('JSON: message and kind or code of the error and of each cause, no stack', async () => {
      const { lines, stream } = capture();
      createLogger({ stream, isTTY: false, level: 'info' }).error('action failed', { error: failure() });
      await flush();
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0]!).error).toEqual({
        kind: 'unavailable',
        message: 'Glance at http://glance:9292: uploading the image failed',
        causes: [
          { message: 'socket hang up', code: 'ERR_SOCKET' },
          { message: 'read ECONNRESET', code: 'ECONNRESET' },
        ],
      });
      expect(lines[0]).not.toMatch(/stack|\\n\s+at /);
    });

    it('text: the chain on one line', async () => {
      const { lines, stream } = capture();
      createLogger({ stream, isTTY: true, level: 'info' }).warn('request failed', { error: failure() });
      await flush();
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(
        'error=unavailable: Glance at http://glance:9292: uploading the image failed' +
          ' <- socket hang up (ERR_SOCKET) <- read ECONNRESET (ECONNRESET)',
      );
    });

    it('debug: the stacks come along, of the error and of each cause', async () => {
      const { lines, stream } = capture();
      createLogger({ stream, isTTY: false, level: 'debug' }).error('action failed', { error: failure() });
      await flush();
      const error = JSON.parse(lines[0]!).error as { stack: string; causes: { stack: string }[] };
      expect(error.stack).toMatch(/^VisorError: Glance at .*\n\s+at /);
      const firstLines = error.causes.map((c) => c.stack.split('\n')[0]);
      expect(firstLines).toEqual(['Error: socket hang up', 'Error: read ECONNRESET']);
    });

    it('masks secrets in a summarised chain too', async () => {
      const secrets = new SecretRegistry();
      secrets.add('s3cr3t-in-a-cause');
      const { lines, stream } = capture();
      const error = new VisorError('auth', 'refused', { cause: new Error('token s3cr3t-in-a-cause expired') });
      createLogger({ stream, isTTY: false, secrets }).error('failed', { error });
      await flush();
      expect(lines[0]).not.toContain('s3cr3t-in-a-cause');
      expect(JSON.parse(lines[0]!).error.causes[0].message).toBe('token *** expired');
    });
  });
});
