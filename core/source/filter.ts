import { VisorError } from '../errors.js';
import type { SourceEntry } from './port.js';

/**
 * Entry filters as simplestreams writes them: `key=literal`, `key!=literal`, `key~regex`
 * (unanchored), `key!~regex`; all must hold. Keys are the entry's fields (`name`, `key`,
 * `version`, `architecture`, `diskFormat`, `os.distro`, `os.version`, ...) or its properties by
 * name (`hepix:vo`). A missing key compares as the empty string.
 */
export interface EntryFilter {
  key: string;
  op: '=' | '!=' | '~' | '!~';
  value: string;
  regex?: RegExp;
}

const filterPattern = /^([A-Za-z][A-Za-z0-9_.:-]*)(!=|!~|=|~)(.*)$/s;

export function parseFilter(text: string): EntryFilter {
  const match = filterPattern.exec(text);
  if (!match) {
    throw new VisorError(
      'invalidInput',
      `filter "${text.slice(0, 80)}" must be key=value, key!=value, key~regex or key!~regex`,
    );
  }
  const [, key, op, value] = match as unknown as [string, string, EntryFilter['op'], string];
  if (op === '~' || op === '!~') {
    try {
      return { key, op, value, regex: new RegExp(value) };
    } catch (error) {
      throw new VisorError('invalidInput', `filter "${text.slice(0, 80)}": not a regular expression`, { cause: error });
    }
  }
  return { key, op, value };
}

export function fieldOf(entry: SourceEntry, key: string): string {
  if (key in entry.properties) return entry.properties[key] ?? '';
  let value: unknown = entry;
  for (const part of key.split('.'))
    value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  return typeof value === 'string' || typeof value === 'number' ? String(value) : '';
}

export function matches(entry: SourceEntry, filters: readonly EntryFilter[]): boolean {
  return filters.every((f) => {
    const value = fieldOf(entry, f.key);
    switch (f.op) {
      case '=':
        return value === f.value;
      case '!=':
        return value !== f.value;
      case '~':
        return f.regex!.test(value);
      case '!~':
        return !f.regex!.test(value);
      default:
        return false;
    }
  });
}
