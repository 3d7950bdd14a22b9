import type { IaasDriver } from '../../core/iaas/port.js';
import { VisorError } from '../../core/errors.js';
import { type DoctorCheck, Warning } from './check.js';

/** Clock differences beyond these break signed requests (AWS-style signatures allow 15 minutes). */
const warnSkewSeconds = 30;
const failSkewSeconds = 300;

/** The first http(s) URL among a cloud's options: where its API answers (endpoint, authUrl, ...). */
export function endpointOf(options: Record<string, unknown>): string | undefined {
  for (const key of ['endpoint', 'authUrl', 'url', 'xmlrpcUrl']) {
    const value = options[key];
    if (typeof value === 'string' && /^https?:\/\//.test(value)) return value;
  }
  for (const value of Object.values(options)) if (typeof value === 'string' && /^https?:\/\//.test(value)) return value;
  return undefined;
}

/**
 * Listing the cloud proves the endpoint, the credentials and the API version the adapter
 * speaks; then the cloud's clock is read from the HTTP Date header of its endpoints (the
 * configured one, then the one its scope names, e.g. Glance's behind Keystone).
 */
export function cloudChecks(name: string, driver: IaasDriver, configured: string | undefined): DoctorCheck[] {
  // Settles when the listing is done (with the scope it names, or undefined): the clock check waits for it.
  let settle: (scope: string | undefined) => void = () => undefined;
  const scope = new Promise<string | undefined>((resolve) => {
    settle = resolve;
  });
  const list: DoctorCheck = {
    name: `cloud ${name}`,
    fix: `check clouds.${name}.options: endpoint, credentials, project (visor plan -t ${name} shows more)`,
    run: async (signal) => {
      let named: string | undefined;
      try {
        const images = await driver.list({ signal });
        named = driver.scope ? await driver.scope({ signal }).catch(() => undefined) : undefined;
        return listed(named ?? name, images);
      } finally {
        settle(named);
      }
    },
  };
  const clock: DoctorCheck = {
    name: `cloud ${name} clock`,
    fix:
      `the cloud's endpoint (${configured ?? 'none configured'}) is not reachable from here: ` +
      'check the address, a proxy or a firewall',
    run: async (signal) => {
      const named = /https?:\/\/\S+/.exec((await scope) ?? '')?.[0];
      const urls = [configured, named].filter((u): u is string => u !== undefined);
      if (urls.length === 0) return new Warning('no HTTP endpoint to read a clock from', 'keep both clocks on NTP');
      for (const url of urls) {
        const line = await skewOf(url, signal);
        if (line) return line;
      }
      return new Warning(`${urls.join(', ')} send no Date header: clock skew unknown`, 'keep both clocks on NTP');
    },
  };
  return [list, clock];
}

function listed(where: string, images: readonly { markers?: unknown }[]): string {
  const ours = images.filter((i) => i.markers !== undefined).length;
  return `${where}: ${images.length} images listed, ${ours} of them made by visor`;
}

async function skewOf(endpoint: string, signal: AbortSignal): Promise<string | Warning | undefined> {
  const before = Date.now();
  const response = await fetch(endpoint, { method: 'GET', signal, redirect: 'manual' });
  const after = Date.now();
  await response.body?.cancel();
  const date = response.headers.get('date');
  if (!date) return undefined;
  // Date has one-second resolution: the midpoint of the request is the fairest local time.
  const skew = Math.round((Date.parse(date) - (before + after) / 2) / 1000);
  const line = `${endpoint} answers (HTTP ${response.status}); clock skew ${skew} s`;
  if (Math.abs(skew) > failSkewSeconds) throw new VisorError('unavailable', `${line}: signed requests will be refused`);
  if (Math.abs(skew) > warnSkewSeconds) return new Warning(line, 'run NTP (chrony, systemd-timesyncd) on both');
  return line;
}

/** Clouds that fetch images by URL need a content URL they can reach: agent.publicUrl. */
export function contentUrlCheck(
  name: string,
  driver: IaasDriver,
  publicUrl: string | undefined,
): DoctorCheck | undefined {
  if (!driver.capabilities.requiresUrl) return undefined;
  return {
    name: `cloud ${name} content URL`,
    fix: 'start the agent, or set agent.publicUrl to an address of it the cloud can reach',
    run: async (signal) => {
      if (!publicUrl) {
        return new Warning(
          'agent.publicUrl is not set: the cloud fetches images from the agent at its listening address',
          'set agent.publicUrl to an address the cloud reaches (e.g. http://agent.example:4568)',
        );
      }
      const response = await fetch(new URL('/health/live', publicUrl), { signal });
      await response.body?.cancel();
      if (!response.ok)
        throw new VisorError('unavailable', `${publicUrl}/health/live answered HTTP ${response.status}`);
      return `${publicUrl} answers from here (the cloud must reach it too)`;
    },
  };
}
