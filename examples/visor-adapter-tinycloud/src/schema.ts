import type { StandardSchemaV1 } from 'visor';

export interface TinyCloudOptions {
  /** The in-process cloud's name. */
  cloud: string;
  project: string;
  /** The project's token (a secret: visor masks it in every log line). */
  token: string;
  /** Images per listing page. */
  pageSize: number;
}

const keys = new Set(['cloud', 'project', 'token', 'pageSize']);

/**
 * The options schema, hand-written as a Standard Schema so that the package needs no validation
 * library (zod, valibot or arktype schemas are Standard Schemas too and work the same).
 */
export const tinyCloudOptionsSchema: StandardSchemaV1<unknown, TinyCloudOptions> = {
  '~standard': {
    version: 1,
    vendor: 'visor-adapter-tinycloud',
    validate(value) {
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        return { issues: [{ message: 'must be a mapping' }] };
      const input = value as Record<string, unknown>;
      const issues: StandardSchemaV1.Issue[] = Object.keys(input)
        .filter((key) => !keys.has(key))
        .map((key) => ({ message: 'unknown key', path: [key] }));
      for (const key of ['cloud', 'project', 'token'] as const) {
        if (typeof input[key] !== 'string' || input[key] === '')
          issues.push({ message: 'must be a non-empty string', path: [key] });
      }
      const pageSize = input['pageSize'] ?? 100;
      if (!Number.isInteger(pageSize) || (pageSize as number) < 1 || (pageSize as number) > 1000) {
        issues.push({ message: 'must be a whole number from 1 to 1000', path: ['pageSize'] });
      }
      if (issues.length > 0) return { issues };
      const { cloud, project, token } = input as { cloud: string; project: string; token: string };
      return { value: { cloud, project, token, pageSize: pageSize as number } };
    },
  },
};
