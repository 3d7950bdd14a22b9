import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectSecrets, SecretRegistry } from '../../core/logging/redact.js';
import { loadConfig } from '../../core/config/load.js';
import { createLogger } from '../../core/logging/logger.js';
import { builtinRegistry } from '../../agent/builtins.js';

/**
 * Secrets are masked where they occur as values, not wherever the same letters occur: a cloud
 * whose password is "glance" (as its adapter and its name) must still be readable in the log
 * as a glance cloud, while the password itself is masked wherever it stands as one.
 */
describe('secret masking: values, not words that happen to be equal', () => {
  let dir: string;
  let secrets: SecretRegistry;
  let config: Awaited<ReturnType<typeof loadConfig>>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-mask-'));
    const file = join(dir, 'visor.yaml');
    await writeFile(
      file,
      [
        `dataDir: ${dir}`,
        'stores:',
        '  images: { type: file, options: { path: images } }',
        'clouds:',
        '  glance:',
        '    adapter: glance',
        '    options:',
        '      authUrl: http://keystone.example:5000/v3',
        '      auth: { type: password, username: admin, password: "${GLANCE_PASSWORD}", projectName: admin }',
        '  other:',
        '    adapter: glance',
        '    options:',
        '      authUrl: http://keystone.example:5000/v3',
        '      auth: { type: password, username: admin, password: "${OTHER_PASSWORD}", projectName: admin }',
        '',
      ].join('\n'),
    );
    config = await loadConfig({
      file,
      env: { GLANCE_PASSWORD: 'glance', OTHER_PASSWORD: 'Xk9-v3ry-s3cret' },
      registry: builtinRegistry(),
    });
    secrets = new SecretRegistry();
    collectSecrets(config, secrets);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const log = async (write: (logger: ReturnType<typeof createLogger>) => void) => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    write(createLogger({ stream, isTTY: false, secrets }));
    await new Promise((r) => setImmediate(r));
    return lines.join('\n');
  };

  it('leaves the adapter, the cloud and ordinary words alone', async () => {
    const text = await log((l) => {
      l.info('sync started', { cloud: 'glance', adapter: 'glance' });
      l.info('cloud glance: 3 images pushed to glance');
      l.warn('glance answered 503', { target: 'glance', url: 'http://glance.example:9292/v2/images' });
    });
    expect(text).not.toContain('***');
    expect(text.match(/glance/g)!.length).toBeGreaterThanOrEqual(7);
  });

  it('masks the same value wherever it stands as a secret', async () => {
    const text = await log((l) => {
      l.warn('keystone refused password=glance for admin');
      l.warn('retrying with "password": "glance"');
      l.warn('auth', { password: 'glance', headers: { Authorization: 'Bearer glance' } });
      l.warn('login failed: Authorization: Basic glance');
      l.warn('fetching http://admin:glance@keystone.example:5000/v3');
    });
    expect(text).not.toMatch(/password=glance|"password": "glance"|Bearer glance|Basic glance|admin:glance@/);
    expect(text.match(/\*\*\*/g)!.length).toBeGreaterThanOrEqual(5);
  });

  it('still masks a secret that cannot be an ordinary word anywhere it appears', async () => {
    const text = await log((l) => {
      l.error('keystone said: invalid credentials Xk9-v3ry-s3cret for user admin');
      l.error('upstream echoed Xk9-v3ry-s3cret%20in a query', { detail: 'Xk9-v3ry-s3cret' });
    });
    expect(text).not.toContain('Xk9-v3ry-s3cret');
  });

  it('`visor config show` masks the passwords and nothing else', async () => {
    const shown = JSON.stringify(secrets.redact(config));
    expect(shown).not.toContain('Xk9-v3ry-s3cret');
    expect(shown).toMatch(/"adapter":"glance"/);
    expect(shown).toMatch(/"glance":\{/);
    expect(shown).toMatch(/"password":"\*\*\*"/);
  });
});
