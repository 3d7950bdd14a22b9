import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirePeer } from '../peers/index.js';
import { runVisorAsync, stackLine } from '../support/cli.js';
import { FileServer } from './support/file-server.js';
import { hepixList } from './support/hepix-fixtures.js';
import { smimeSign, TestCa } from './support/test-pki.js';

const openssl = await requirePeer('openssl');

describe.skipIf(openssl.skip)('visor sources (CLI, signed HEPiX list over HTTP)', () => {
  let server: FileServer;
  let dir: string;
  let config: string;
  let tamperedConfig: string;

  beforeAll(async () => {
    server = await new FileServer().start();
    dir = mkdtempSync(join(tmpdir(), 'visor-sources-cli-'));
    const ca = new TestCa('CLI Test CA', dir);
    const caPath = join(dir, 'certificates');
    ca.installInto(caPath);
    const endorser = ca.issue('CLI Endorser');
    const data = randomBytes(100_000);
    server.files.set('/img', data);
    const images = [{ id: 'cli-img', title: 'CLI image', version: '3', data, url: server.url('/img'), format: 'RAW' }];
    const signed = smimeSign(hepixList({ signer: endorser, version: '7', images }), endorser);
    server.files.set('/list', signed);
    server.files.set('/tampered', Buffer.from(signed.toString('latin1').replace('CLI image', 'CLI imagE'), 'latin1'));
    const write = (file: string, path: string) => {
      const yaml = [
        `dataDir: ${join(dir, file)}-data`,
        'subscriptions:',
        '  egi:',
        '    source: hepix',
        '    maxBandwidth: 10MiB',
        '    options:',
        `      url: ${server.url(path)}`,
        `      caPath: ${caPath}`,
        `      endorsers: ["${endorser.dn}"]`,
        '      allowPrivateNetworks: true',
        '',
      ].join('\n');
      writeFileSync(join(dir, file), yaml);
      return join(dir, file);
    };
    config = write('visor.yaml', '/list');
    tamperedConfig = write('tampered.yaml', '/tampered');
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('syncs a subscription into the catalog, then finds nothing to do', async () => {
    const first = await runVisorAsync(['sources', 'sync', '-c', config]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/\[source:egi\] succeeded — 1 imported/);
    const again = await runVisorAsync(['sources', 'sync', 'egi', '-c', config, '--json']);
    expect(again.code).toBe(0);
    const runs = (JSON.parse(again.stdout) as { runs: { status: string; actions: unknown[] }[] }).runs;
    expect(runs[0]?.status).toBe('succeeded');
    const list = await runVisorAsync(['sources', 'list', '-c', config]);
    expect(list.stdout).toMatch(/egi\s+hepix\s+-\s+deprecate\s+succeeded/);
  });

  it('refuses a tampered list: exit 1, a clear reason, no stack trace, nothing imported', async () => {
    const result = await runVisorAsync(['sources', 'sync', '-c', tamperedConfig]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/failed: the list's signature does not match its content: tampered/);
    expect(result.stdout + result.stderr).not.toMatch(stackLine);
  });

  it('reports a bad subscription config with its path', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'subscriptions:\n  x:\n    source: hepix\n    options:\n      url: ftp://nope\n');
    const result = await runVisorAsync(['sources', 'list', '-c', bad]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/subscriptions\.x\.options\.url/);
    expect(result.stderr).not.toMatch(stackLine);
  });
});
