// The dashboard's page, script and style ship in the package beside the compiled server code
// (dist/agent/ui/assets), where agent/ui/routes.ts reads them; scripts/bundle.mjs copies them beside
// the bundle too. They are plain files, not bundled.
import { cpSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../agent/ui/assets/', import.meta.url));
const to = fileURLToPath(new URL('../dist/agent/ui/assets/', import.meta.url));
mkdirSync(to, { recursive: true });
cpSync(from, to, { recursive: true });
