import { defineConfig } from 'vitest/config';

export default defineConfig({
  // inversify's @injectable/@inject are legacy (parameter) decorators. No design-type metadata is
  // emitted, here or by tsc: every injected parameter names its id with @inject, so the wiring is
  // the same whichever compiler built the code (agent/runtime/runtime.test.ts resolves it).
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: false } },
  test: {
    include: ['core/**/*.test.ts', 'adapters/**/*.test.ts', 'agent/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/setup/global-setup.ts'],
    reporters: ['default', './test/setup/run-reporter.ts'],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    pool: 'forks',
  },
});
