#!/usr/bin/env node
// A helper for the 120-character rule (scripts/check-source.mjs), for the lines Biome's formatter
// cannot shorten. Default mode: a long line that is long because of a string or template literal
// gets that literal split (at a space, between two XML tags, or in a hex digest) into two
// literals of the same kind ('a ' + 'b', `a ${x} ` + `b`: the same value); then run
// `npx biome format --write .` and repeat until it splits nothing. `--join FILES` joins two
// pieces that the formatter put back on one line, where that line fits. `--comments` wraps long
// comment lines (// lines, one-line /** */ blocks, * lines of a block). What is left (regular
// expressions, long ${} expressions, trailing comments, shell) is done by hand.
// Usage: node scripts/split-long-strings.mjs [--join|--comments] [files...]
// (default files: those check-source.mjs reports)
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import ts from 'typescript';

const max = 120;
// Room for the closing quote and ` +` after the first piece.
const room = 4;

function longFiles() {
  let out = '';
  try {
    execFileSync('node', ['scripts/check-source.mjs'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    out = error.stderr;
  }
  const files = new Set();
  for (const line of out.split('\n')) {
    const m = /^(.+\.(?:ts|mts|cts|js|mjs|cjs)):\d+: line of/.exec(line);
    if (m) files.add(m[1]);
  }
  return [...files];
}

/** Text ranges [start, end) of literal characters (no delimiters, no ${} parts) with their owner. */
function literalRanges(source) {
  const ranges = [];
  const visit = (node) => {
    const text = source.text;
    if (ts.isStringLiteral(node) && splittable(node)) {
      ranges.push({
        start: node.getStart(source) + 1,
        end: node.end - 1,
        quote: text[node.getStart(source)],
        owner: node,
      });
    } else if (ts.isNoSubstitutionTemplateLiteral(node) && splittable(node)) {
      ranges.push({ start: node.getStart(source) + 1, end: node.end - 1, quote: '`', owner: node });
    } else if (ts.isTemplateExpression(node) && splittable(node)) {
      const head = node.head;
      ranges.push({ start: head.getStart(source) + 1, end: head.end - 2, quote: '`', owner: node });
      for (const span of node.templateSpans) {
        const lit = span.literal;
        const closing = ts.isTemplateTail(lit) ? 1 : 2;
        ranges.push({ start: lit.getStart(source) + 1, end: lit.end - closing, quote: '`', owner: node });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return ranges;
}

function splittable(node) {
  const parent = node.parent;
  if (!parent) return false;
  if (ts.isTaggedTemplateExpression(parent)) return false;
  if (ts.isImportDeclaration(parent) || ts.isExportDeclaration(parent) || ts.isExternalModuleReference(parent))
    return false;
  if (ts.isLiteralTypeNode(parent) || ts.isImportTypeNode(parent)) return false;
  if (ts.isExpressionStatement(parent)) return false; // directives
  if (ts.isCaseClause(parent) || ts.isElementAccessExpression(parent)) return false;
  if ('name' in parent && parent.name === node) return false; // property names
  if (ts.isCallExpression(parent) && ts.isImportKeyword?.(parent.expression)) return false;
  if (ts.isCallExpression(parent) && parent.expression.kind === ts.SyntaxKind.ImportKeyword) return false;
  return true;
}

/** Whether `a + b` can stand in place of the literal without parentheses. */
function bare(node) {
  const parent = node.parent;
  return (
    (ts.isCallExpression(parent) && parent.expression !== node) ||
    ts.isNewExpression(parent) ||
    (ts.isVariableDeclaration(parent) && parent.initializer === node) ||
    (ts.isPropertyAssignment(parent) && parent.initializer === node) ||
    ts.isArrayLiteralExpression(parent) ||
    ts.isReturnStatement(parent) ||
    ts.isThrowStatement(parent) ||
    ts.isTemplateSpan(parent) ||
    (ts.isBinaryExpression(parent) && parent.operatorToken.kind === ts.SyntaxKind.PlusToken) ||
    (ts.isConditionalExpression(parent) && parent.condition !== node) ||
    ts.isParenthesizedExpression(parent) ||
    (ts.isArrowFunction(parent) && parent.body === node) ||
    (ts.isBinaryExpression(parent) && parent.operatorToken.kind === ts.SyntaxKind.EqualsToken && parent.right === node)
  );
}

function splitFile(file) {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const ranges = literalRanges(source);
  const lineStarts = source.getLineStarts();
  const edits = [];
  const used = new Set();
  for (let line = 0; line < lineStarts.length; line++) {
    const start = lineStarts[line];
    const end = line + 1 < lineStarts.length ? lineStarts[line + 1] - 1 : text.length;
    if (end - start <= max) continue;
    // A space inside a literal on this line, early enough that the first piece and ` +` fit;
    // near the middle of the literal's part of the line (both pieces read as phrases), after
    // punctuation where there is some.
    let best;
    for (const r of ranges) {
      if (used.has(r.owner)) continue;
      const from = Math.max(r.start, start);
      const upto = Math.min(r.end, end);
      const limit = Math.min(upto, start + max - room);
      const first = Math.max(r.owner.getStart(source), start);
      const last = Math.min(r.owner.end, end);
      const middle = (first + last) / 2;
      for (let p = from + 1; p < limit; p++) {
        // After a space, between two XML tags, or anywhere in a run of hex digits (a digest).
        const space = text[p] === ' ' && text[p - 1] !== '\\';
        const tags = text[p] === '>' && text[p + 1] === '<';
        const hex = /^[0-9a-f]{64,}$/.test(text.slice(r.start, r.end));
        if (!(space || tags || hex) || p + 1 >= r.end) continue;
        if (p - r.owner.getStart(source) < 15 || r.owner.end - p < 15) continue;
        const score = Math.abs(p - middle) - (/[,;:.)—-]/.test(text[p - 1]) ? 15 : 0) + (space ? 0 : 5);
        if (!best || score < best.score) best = { at: p + 1, range: r, score };
      }
    }
    if (!best) continue;
    used.add(best.range.owner);
    edits.push(best);
  }
  if (edits.length === 0) return 0;
  let out = text;
  // From the end, so earlier offsets stay valid; parentheses where `+` would bind wrongly.
  const wraps = new Map();
  for (const e of edits) if (!bare(e.range.owner)) wraps.set(e.range.owner, e.range.owner);
  const inserts = [];
  for (const e of edits) inserts.push({ at: e.at, text: `${e.range.quote} +\n${e.range.quote}` });
  for (const owner of wraps.values()) {
    inserts.push({ at: owner.getStart(source), text: '(' });
    inserts.push({ at: owner.end, text: ')' });
  }
  inserts.sort((a, b) => b.at - a.at);
  for (const i of inserts) out = out.slice(0, i.at) + i.text + out.slice(i.at);
  writeFileSync(file, out);
  return edits.length;
}

/** After formatting: two pieces that ended up on one line are joined again (when the line fits). */
function joinFile(file) {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const lineOf = (pos) => source.getLineAndCharacterOfPosition(pos).line;
  const lineLength = (line) => {
    const starts = source.getLineStarts();
    const end = line + 1 < starts.length ? starts[line + 1] - 1 : text.length;
    return end - starts[line];
  };
  const literal = (n) =>
    n && (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n) || ts.isTemplateExpression(n)) ? n : undefined;
  const cuts = [];
  const visit = (node) => {
    if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) {
      const right = literal(node.right);
      const left =
        literal(node.left) ??
        (ts.isBinaryExpression(node.left) && node.left.operatorToken.kind === ts.SyntaxKind.PlusToken
          ? literal(node.left.right)
          : undefined);
      // A test's name back on one line would make the formatter keep the whole call on one line again.
      const parent = node.parent;
      const testName =
        ts.isCallExpression(parent) &&
        parent.arguments[0] === node &&
        /^(it|test|describe)\b/.test(parent.expression.getText(source));
      if (left && right && !testName) {
        const l = text[left.end - 1];
        const r = text[right.getStart(source)];
        const line = lineOf(left.end);
        const removed = right.getStart(source) + 1 - (left.end - 1);
        if (l === r && line === lineOf(right.getStart(source)) && lineLength(line) - removed <= max)
          cuts.push({ from: left.end - 1, to: right.getStart(source) + 1 });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  if (cuts.length === 0) return 0;
  // One cut per line (the line lengths above were measured before any cut).
  const perLine = new Map();
  for (const c of cuts) if (!perLine.has(lineOf(c.from))) perLine.set(lineOf(c.from), c);
  let out = text;
  for (const c of [...perLine.values()].sort((a, b) => b.from - a.from)) out = out.slice(0, c.from) + out.slice(c.to);
  writeFileSync(file, out);
  return perLine.size;
}

/** Wraps a comment's words into lines of at most `max` characters, each starting with `lead`. */
function wrapWords(lead, words) {
  const lines = [];
  let line = lead;
  for (const word of words) {
    if (line !== lead && line.length + 1 + word.length > max) {
      lines.push(line);
      line = lead;
    }
    line = line === lead ? `${lead}${word}` : `${line} ${word}`;
  }
  lines.push(line);
  return lines;
}

function wrapComments(file) {
  const lines = readFileSync(file, 'utf8').split('\n');
  let changed = 0;
  const out = lines.flatMap((line) => {
    if (line.length <= max) return [line];
    const oneLine = /^(\s*)\/\*\* (.*) \*\/$/.exec(line);
    const slashes = /^(\s*\/\/ )(.*)$/.exec(line);
    const star = /^(\s*\* )(.*)$/.exec(line);
    if (oneLine) {
      changed++;
      return [`${oneLine[1]}/**`, ...wrapWords(`${oneLine[1]} * `, oneLine[2].split(' ')), `${oneLine[1]} */`];
    }
    const match = slashes ?? star;
    if (!match) return [line];
    changed++;
    return wrapWords(match[1], match[2].split(' '));
  });
  if (changed > 0) writeFileSync(file, out.join('\n'));
  return changed;
}

const mode = ['--join', '--comments'].includes(process.argv[2]) ? process.argv[2] : 'split';
const args = process.argv.slice(mode === 'split' ? 2 : 3);
const files = args.length > 0 ? args : longFiles();
const run = { split: splitFile, '--join': joinFile, '--comments': wrapComments }[mode];
let total = 0;
for (const file of files) total += run(file);
console.log(`${mode}: ${total} change(s) in ${files.length} file(s)`);
