import { VisorError } from '../../core/errors.js';

/**
 * Parses a JSON metadata body strictly: UTF-8 only (not silently replaced), and no key twice
 * in one object. JSON.parse keeps the last of duplicate keys while other parsers keep the
 * first, so a body that says two things is refused rather than read one way.
 */
export function parseJsonBody(data: Buffer): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(data);
  } catch {
    throw new VisorError('invalidInput', 'the body is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (error) {
    throw new VisorError('invalidInput', `the body is not valid JSON: ${(error as Error).message}`);
  }
  const duplicate = firstDuplicateKey(text);
  if (duplicate !== undefined)
    throw new VisorError('invalidInput', `the body gives the key "${duplicate.slice(0, 100)}" twice in one object`);
  return value;
}

/** The first key repeated within one object of a valid JSON text (iterative: nesting depth costs no stack). */
function firstDuplicateKey(text: string): string | undefined {
  const objects: (Set<string> | undefined)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      const keys = objects[objects.length - 1];
      if (keys && expectKey) {
        const key = JSON.parse(text.slice(start, i + 1)) as string;
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
    } else if (c === '{') {
      objects.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      objects.push(undefined);
      expectKey = false;
    } else if (c === '}' || c === ']') {
      objects.pop();
      expectKey = false;
    } else if (c === ',') {
      expectKey = objects[objects.length - 1] !== undefined;
    }
  }
  return undefined;
}
