import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { PeerCoordinator, setRunCoordinator } from '../peers/coordinator.js';

/**
 * Once per run, in the main vitest process: builds the CLI (its tests run the built `visor`
 * executable, exactly as users do), and starts the peer coordinator that starts each real peer
 * once, when a test first asks for it, for all test files (test/peers/registry.ts).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env['VISOR_TEST_SKIP_BUILD'] !== '1')
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
  const coordinator = new PeerCoordinator();
  project.provide('visorPeerCoordinator', await coordinator.listen());
  setRunCoordinator(coordinator);
  // The reporter has printed its summary by now (vitest tears global setups down on close).
  return () => coordinator.close();
}
