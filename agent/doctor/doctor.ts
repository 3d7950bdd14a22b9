import type { Runtime } from '../runtime/open-runtime.js';
import { type CheckResult, type DoctorCheck, runCheck } from './check.js';
import { catalogCheck, permissionChecks, qemuImgCheck, storeCheck } from './checks.js';
import { cloudChecks, contentUrlCheck, endpointOf } from './cloud-checks.js';

/**
 * Everything the config names, checked at once, each under its own deadline: the data folder
 * and key, the catalog, each store (a write, read and delete), each cloud (listing, clock,
 * content URL), qemu-img. Results come back in a stable order.
 */
export async function runDoctor(runtime: Runtime, deadlineMs: number): Promise<CheckResult[]> {
  const checked = (checks: readonly DoctorCheck[]) => Promise.all(checks.map((c) => runCheck(c, deadlineMs)));
  const groups = await Promise.all([
    checked(permissionChecks(runtime)),
    checked([catalogCheck(() => runtime.catalog())]),
    storeResults(runtime, checked, deadlineMs),
    cloudResults(runtime, checked, deadlineMs),
    checked([qemuImgCheck()]),
  ]);
  return groups.flat();
}

type Checked = (checks: readonly DoctorCheck[]) => Promise<CheckResult[]>;

async function storeResults(runtime: Runtime, checked: Checked, deadlineMs: number): Promise<CheckResult[]> {
  let stores: ReadonlyMap<string, import('../../core/store/port.js').Store> | undefined;
  const opened = await runCheck(
    {
      name: 'stores',
      fix: 'check stores: in the config',
      run: async () => {
        stores = await runtime.stores();
        return `${stores.size} configured, default ${runtime.config.defaultStore}`;
      },
    },
    deadlineMs,
  );
  if (!stores) return [opened];
  return checked([...stores].map(([name, store]) => storeCheck(name, store)));
}

async function cloudResults(runtime: Runtime, checked: Checked, deadlineMs: number): Promise<CheckResult[]> {
  const clouds = Object.keys(runtime.config.clouds);
  if (clouds.length === 0) return [];
  let built: Awaited<ReturnType<Runtime['targets']>> | undefined;
  const opened = await runCheck(
    {
      name: 'clouds',
      fix: 'check clouds: in the config',
      run: async () => {
        built = await runtime.targets();
        return `${clouds.length} configured`;
      },
    },
    deadlineMs,
  );
  if (!built) return [opened];
  const checks: DoctorCheck[] = [];
  const failedToBuild: CheckResult[] = [];
  for (const name of clouds) {
    const failed = built.failed.get(name);
    const target = built.targets.get(name);
    if (failed || !target) {
      const detail = failed?.message ?? 'no driver';
      failedToBuild.push({
        check: `cloud ${name}`,
        verdict: 'fail',
        detail,
        fix: `fix clouds.${name} in the config`,
        ms: 0,
      });
      continue;
    }
    const endpoint = endpointOf(runtime.config.clouds[name]!.options as Record<string, unknown>);
    checks.push(...cloudChecks(name, target.driver, endpoint));
    const content = contentUrlCheck(name, target.driver, runtime.config.agent.publicUrl);
    if (content) checks.push(content);
  }
  return [...failedToBuild, ...(await checked(checks))];
}
