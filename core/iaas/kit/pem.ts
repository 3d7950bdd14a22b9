import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { VisorError } from '../../errors.js';

export interface PemOption {
  /** The option's name as the config spells it ("caBundle", "ec2.caBundle"). */
  option: string;
  /** The `clouds:` entry, for the message. */
  cloud: string;
  /** Relative paths are read from here (the agent's data directory). */
  dataDir: string;
  /** The value may be the PEM text itself, not only a file (default: a file only). */
  inline?: boolean;
  /** It must hold a certificate (a CA bundle), not just any PEM block. */
  certificate?: boolean;
}

/**
 * The PEM text an adapter option names: read from a file (relative to the data directory), or,
 * where the option allows it, given inline. A missing file or one without the expected PEM
 * block is a `config` error that names the option and the path, read before any call is made.
 */
export async function loadPem(value: string, option: PemOption): Promise<string> {
  const marker = option.certificate ? '-----BEGIN CERTIFICATE-----' : '-----BEGIN ';
  if (option.inline && value.includes(marker)) return value;
  const path = isAbsolute(value) ? value : resolve(option.dataDir, value);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new VisorError(
      'config',
      `clouds.${option.cloud}: cannot read ${option.option} ${path}: ${(error as Error).message}`,
    );
  }
  if (!text.includes(marker)) {
    const what = option.certificate ? 'PEM certificate' : 'PEM block';
    throw new VisorError('config', `clouds.${option.cloud}: ${option.option} ${path} holds no ${what}`);
  }
  return text;
}
