import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, runVisorAsync } from '../support/cli.js';

/** Every example config is valid as shipped (with its ${ENV} variables set). */
describe('examples/*.yaml', () => {
  const env = {
    OS_PASSWORD: 'x',
    VISOR_MONGODB_URI: 'mongodb://db1/?replicaSet=rs0',
    VISOR_PG_PASSWORD: 'pw',
    VISOR_S3_ACCESS_KEY: 'AK',
    VISOR_S3_SECRET_KEY: 'SK',
    OS_APP_CRED_ID: 'id',
    OS_APP_CRED_SECRET: 'secret',
    ONE_PASSWORD: 'pw',
    EUCA_ACCESS_KEY: 'AK',
    EUCA_SECRET_KEY: 'SK',
    NIMBUS_ACCESS_KEY: 'AK',
    NIMBUS_SECRET_KEY: 'SK',
    NIMBUS_CANONICAL_ID: '1d7c1c1e-9c0b-4a36-9dca-3bdc1c3a6b9f',
  };
  const files = readdirSync(join(repoRoot, 'examples')).filter((f) => f.endsWith('.yaml'));

  it('has examples', () => expect(files.length).toBeGreaterThanOrEqual(3));
  it.each(files)('%s validates', async (file) => {
    const result = await runVisorAsync(['config', 'validate', join(repoRoot, 'examples', file)], { env });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('central.yaml is the PostgreSQL + S3 deployment the README describes', async () => {
    const file = join(repoRoot, 'examples', 'central.yaml');
    const result = await runVisorAsync(['config', 'validate', '--json', file], { env });
    expect(result.code).toBe(0);
    const summary = { valid: true, catalog: 'postgresql', stores: ['central'], clouds: { 'site-a': 'glance' } };
    expect(JSON.parse(result.stdout)).toMatchObject(summary);
    const shown = await runVisorAsync(['config', 'show', '-c', file], { env });
    const catalog = (JSON.parse(shown.stdout) as { catalog: { options: Record<string, unknown> } }).catalog.options;
    const masked = expect.not.stringContaining('pw');
    expect(catalog).toMatchObject({ schema: 'visor', poolSize: 10, migrations: 'manual', password: masked });
  });
});
