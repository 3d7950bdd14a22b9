import { defineConfig } from 'vitest/config';

export default defineConfig({
  // inversify decorators: the default transform emits no decorator metadata; this one does.
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: true } },
  test: {
    include: ['core/**/*.test.ts', 'adapters/**/*.test.ts', 'agent/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/setup/global-setup.ts'],
    reporters: ['default', './test/setup/run-reporter.ts'],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    pool: 'forks',
  },
});
