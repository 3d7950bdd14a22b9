#!/usr/bin/env node
// No 'reflect-metadata' here: the runtime's modules (the only ones with decorators) import it
// themselves, and the commands that never open a runtime (get, add, ...) start faster without it.
import { runCli } from './program.js';

const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
});
process.exitCode = code;
// Interrupted (130: SIGINT, 143: SIGTERM) and cleaned up: connections the abort left half-closed
// must not keep the process waiting.
if (code === 130 || code === 143) process.exit(code);
