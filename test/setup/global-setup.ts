import { execFileSync } from 'node:child_process';

/** CLI tests run the built `visor` executable, exactly as users do: build it once per run. */
export default function setup(): void {
  if (process.env['VISOR_TEST_SKIP_BUILD'] === '1') return;
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
