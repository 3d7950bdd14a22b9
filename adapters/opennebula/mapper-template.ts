import { ValidationError, type FieldIssue } from '../../core/errors.js';

/**
 * Writing OpenNebula template text (`KEY = "value"`, one attribute per line), the form
 * one.image.allocate and one.image.update take. The grammar is src/parsers/template_parser.l:
 * names are [A-Za-z0-9_]+ (upper-cased by oned), a value is double-quoted with `\"` for a quote
 * and no other escape. Two things cannot be written at all, so they are refused here rather than
 * mangled by oned: a value containing `]]>` (the lexer aborts on it) and a value ending in a
 * backslash (its closing quote would read as an escaped one).
 */

export const attributeNamePattern = /^[A-Z][A-Z0-9_]*$/;

/** Characters oned refuses in object names (PoolObjectSQL::INVALID_NAME_CHARS), and its length limit. */
export const invalidNameChars = '&|:\\";/\'#{}$<>';
export const maxNameLength = 128;

export function nameProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  const bad = [...name].find((c) => invalidNameChars.includes(c));
  if (bad !== undefined)
    return `OpenNebula does not allow the character '${bad}' in names (not allowed: ${invalidNameChars})`;
  if (name.length > maxNameLength) return `OpenNebula names are at most ${maxNameLength} characters`;
  return undefined;
}

export function valueProblem(value: string): string | undefined {
  if (value.includes(']]>')) return "contains ']]>', which OpenNebula's template syntax cannot carry";
  if (value.endsWith('\\')) return "ends with a backslash, which OpenNebula's template syntax cannot carry";
  return undefined;
}

/** Template text for the attributes, in a stable order; throws `invalidInput` naming every value it cannot write. */
export function serializeTemplate(attributes: Readonly<Record<string, string>>, subject: string): string {
  const issues: FieldIssue[] = [];
  const lines: string[] = [];
  for (const key of Object.keys(attributes).sort()) {
    const value = attributes[key] ?? '';
    if (!attributeNamePattern.test(key))
      issues.push({ path: key, message: 'is not an OpenNebula attribute name ([A-Z0-9_], starting with a letter)' });
    const problem = valueProblem(value);
    if (problem) issues.push({ path: key, message: problem });
    lines.push(`${key} = "${value.replaceAll('"', '\\"')}"`);
  }
  if (issues.length > 0) throw new ValidationError('invalidInput', subject, issues);
  return lines.join('\n');
}
