/**
 * A counting semaphore: at most `limit` holders at once, first come first served. Holders may name
 * who they work for (a cloud): a freed slot goes to the waiting key that holds the fewest (first come
 * first served among equals), and with `shared`, one key never holds every slot (when `limit` > 1):
 * one is always left for the others, so a cloud whose transfers crawl cannot hold the other clouds'
 * work behind it.
 */
export class Limiter {
  #active = 0;
  readonly #byKey = new Map<string, number>();
  readonly #queue: { key: string; go: () => void }[] = [];
  readonly #perKey: number;

  constructor(
    private readonly limit: number,
    options: { shared?: boolean } = {},
  ) {
    this.#perKey = options.shared && limit > 1 ? limit - 1 : limit;
  }

  async run<T>(fn: () => Promise<T>, key = ''): Promise<T> {
    if (this.#active >= this.limit || this.#held(key) >= this.#perKey || this.#queue.length > 0) {
      await new Promise<void>((go) => {
        this.#queue.push({ key, go });
        this.#next();
      });
    } else this.#take(key);
    try {
      return await fn();
    } finally {
      this.#active--;
      const left = this.#held(key) - 1;
      if (left === 0) this.#byKey.delete(key);
      else this.#byKey.set(key, left);
      this.#next();
    }
  }

  #held(key: string): number {
    return this.#byKey.get(key) ?? 0;
  }

  #take(key: string): void {
    this.#active++;
    this.#byKey.set(key, this.#held(key) + 1);
  }

  #next(): void {
    while (this.#active < this.limit) {
      let best = -1;
      for (let i = 0; i < this.#queue.length; i++) {
        const held = this.#held(this.#queue[i]!.key);
        if (held >= this.#perKey) continue;
        if (best < 0 || held < this.#held(this.#queue[best]!.key)) best = i;
      }
      if (best < 0) return;
      const [waiter] = this.#queue.splice(best, 1);
      this.#take(waiter!.key);
      waiter!.go();
    }
  }
}
