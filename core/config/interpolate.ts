import type { FieldIssue } from '../errors.js';
import { formatPath } from '../validation.js';

export type Env = Readonly<Record<string, string | undefined>>;

const reference = /\$\$|\$\{([^}]*)\}|\$\{/g;
const variableName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Replaces `${NAME}` and `${NAME:-default}` in every string scalar of a parsed YAML tree
 * (`$$` is a literal `$`). Works on values, not on the file's text, so an environment
 * variable can never inject YAML structure. Every problem is collected with its path.
 */
export function interpolateEnv(value: unknown, env: Env, issues: FieldIssue[], path: PropertyKey[] = []): unknown {
  if (typeof value === 'string') return interpolateString(value, env, issues, path);
  if (Array.isArray(value)) return value.map((v, i) => interpolateEnv(v, env, issues, [...path, i]));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    // defineProperty: a "__proto__" key stays a key (and is reported as unknown), never a prototype.
    for (const [k, v] of Object.entries(value))
      Object.defineProperty(out, k, {
        value: interpolateEnv(v, env, issues, [...path, k]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return out;
  }
  return value;
}

function interpolateString(text: string, env: Env, issues: FieldIssue[], path: PropertyKey[]): string {
  if (!text.includes('$')) return text;
  return text.replace(reference, (match, body: string | undefined) => {
    if (match === '$$') return '$';
    if (body === undefined) {
      issues.push({ path: formatPath(path), message: 'unterminated "${" (write $$ for a literal $)' });
      return match;
    }
    const [name = '', fallback] = splitDefault(body);
    if (!variableName.test(name)) {
      issues.push({ path: formatPath(path), message: `"\${${body}}" is not a valid environment variable reference` });
      return match;
    }
    const found = env[name];
    if (found !== undefined && found !== '') return found;
    if (fallback !== undefined) return fallback;
    issues.push({
      path: formatPath(path),
      message: `environment variable ${name} is not set (use \${${name}:-default} for a default)`,
    });
    return match;
  });
}

function splitDefault(body: string): [string, string | undefined] {
  const at = body.indexOf(':-');
  return at < 0 ? [body.trim(), undefined] : [body.slice(0, at).trim(), body.slice(at + 2)];
}
