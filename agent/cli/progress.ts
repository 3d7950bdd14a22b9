import type { CliIo } from './io.js';

export interface Progress {
  update(bytes: number): void;
  stop(): void;
}

const none: Progress = { update() {}, stop() {} };

/** A progress bar with rate and ETA on a terminal; nothing when output is piped or --json. */
export async function progressBar(io: CliIo, label: string, total: number, enabled: boolean): Promise<Progress> {
  if (!enabled || !io.stderr.isTTY || total <= 0) return none;
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value_h}/{total_h} | {rate} | ETA {eta_formatted}`,
      stream: io.stderr as NodeJS.WritableStream,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  const fmt = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);
  bar.start(total, 0, { value_h: fmt(0), total_h: fmt(total), rate: '-' });
  let last = 0;
  return {
    update(bytes) {
      const now = Date.now();
      if (now - last < 100 && bytes < total) return;
      last = now;
      const seconds = Math.max(0.001, (now - started) / 1000);
      bar.update(bytes, { value_h: fmt(bytes), rate: `${fmt(bytes / seconds)}/s` });
    },
    stop() {
      bar.stop();
    },
  };
}
