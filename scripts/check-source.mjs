#!/usr/bin/env node
// Checks what Biome cannot: no line of code longer than 120 characters (Biome's formatter wraps
// code but not long strings and comments), and no comment that points at a file outside the
// repository (an absolute path, a ../ path out of it, or a path that is not in it). Exit 1 on
// any finding, each printed as file:line: problem. Usage: node scripts/check-source.mjs [files...]
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const maxLength = 120;
const code = /\.(ts|mts|cts|js|mjs|cjs|sh)$/;
// A file reference: path segments ending in a file name with an extension a reader would open.
const reference =
  /(?<![\w@.:/-])((?:~|\.{1,2})?\/?(?:[\w.-]+\/)+[\w.-]+\.(?:md|ts|js|mjs|json|ya?ml|sh|py|xsd|xml|txt|html))\b/g;
// Built or installed, not committed: named in comments on purpose.
const generated = /^(dist|node_modules|coverage)\//;

function comments(line, language) {
  if (language === 'sh') {
    const at = line.search(/(^|\s)#/);
    return at < 0 ? '' : line.slice(at);
  }
  const trimmed = line.trimStart();
  if (trimmed.startsWith('*') || trimmed.startsWith('/*')) return trimmed;
  // A comment starts a token: the // of a URL (https://) does not start one.
  const at = line.search(/(^|\s)\/\//);
  return at < 0 ? '' : line.slice(at);
}

function outside(file, path) {
  if (path.startsWith('~') || isAbsolute(path)) return `${path} is outside the repository`;
  // A placeholder folder (BASE/x.sh, DIR/y.py): a file the code makes, not one the reader opens.
  if (/^[A-Z][A-Z0-9_]*\//.test(path)) return undefined;
  const here = resolve(root, dirname(file), path);
  const candidates = path.startsWith('.') ? [here] : [resolve(root, path), here];
  const inside = candidates.filter((c) => !relative(root, c).startsWith('..'));
  if (inside.length === 0) return `${path} is outside the repository`;
  if (generated.test(relative(root, inside[0]))) return undefined;
  return inside.some((c) => existsSync(c)) ? undefined : `${path} is not in the repository`;
}

export function check(file, text) {
  const problems = [];
  const language = file.endsWith('.sh') ? 'sh' : 'js';
  text.split('\n').forEach((line, index) => {
    const at = `${file}:${index + 1}`;
    if (line.length > maxLength) problems.push(`${at}: line of ${line.length} characters (at most ${maxLength})`);
    for (const match of comments(line, language).matchAll(reference)) {
      const why = outside(file, match[1]);
      if (why) problems.push(`${at}: a comment points at ${why}`);
    }
  });
  return problems;
}

function main() {
  const listed = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], {
    cwd: root,
    encoding: 'utf8',
  });
  const files = process.argv.length > 2 ? process.argv.slice(2) : listed.split('\n');
  const problems = files
    .map((f) => relative(root, resolve(f)))
    .filter((f) => code.test(f) && existsSync(join(root, f)))
    .flatMap((f) => check(f, readFileSync(join(root, f), 'utf8')));
  for (const problem of problems) console.error(problem);
  if (problems.length > 0) {
    console.error(`${problems.length} problem(s)`);
    process.exitCode = 1;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
