import type { z } from 'zod';
import type { FieldIssue } from './errors.js';

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

/**
 * Flattens zod issues into one entry per bad field, so that a single report names every
 * problem. Unknown keys become one issue each, at the key's own path.
 */
export function zodIssues(error: z.ZodError, prefix: readonly PropertyKey[] = []): FieldIssue[] {
  const out: FieldIssue[] = [];
  for (const issue of error.issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: formatPath([...path, key]), message: 'unknown key' });
    } else if (issue.code === 'invalid_key' && issue.issues.length > 0) {
      // Record keys: say what is wrong with the key rather than zod's "Invalid key in record".
      out.push({ path: formatPath(path), message: `invalid name: ${issue.issues.map((i) => i.message).join('; ')}` });
    } else if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // Report the branch that got furthest rather than zod's generic "invalid input".
      const best = [...issue.errors].sort((a, b) => b.length - a.length)[0] ?? [];
      const nested = best.map((i) => ({ path: formatPath([...path, ...i.path]), message: i.message }));
      out.push(...(nested.length > 0 ? nested : [{ path: formatPath(path), message: issue.message }]));
    } else {
      out.push({ path: formatPath(path), message: issue.message });
    }
  }
  return out;
}
