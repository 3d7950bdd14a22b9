import { VisorError, type ErrorKind } from 'visor';
import { type NewRecord, type RecordChanges, type TinyCloud, TinyCloudError, type TinyRecord } from './cloud.js';

const kindByStatus: Record<TinyCloudError['status'], ErrorKind> = {
  400: 'invalidInput',
  401: 'auth',
  404: 'notFound',
  409: 'conflict',
  413: 'tooLarge',
};

/**
 * The wire: every call to the cloud, authenticated with the project's token, its refusals
 * turned into visor's typed errors (a real adapter maps HTTP statuses the same way).
 */
export class TinyCloudClient {
  constructor(
    private readonly cloud: TinyCloud,
    private readonly project: string,
    private readonly token: string,
  ) {}

  listPage(limit: number, marker?: string, signal?: AbortSignal) {
    return this.#call(signal, (project) =>
      this.cloud.list(project, { limit, ...(marker !== undefined ? { marker } : {}) }),
    );
  }

  get(id: string, signal?: AbortSignal): Promise<TinyRecord> {
    return this.#call(signal, (project) => this.cloud.get(project, id));
  }

  create(fields: NewRecord, signal?: AbortSignal): Promise<TinyRecord> {
    return this.#call(signal, (project) => this.cloud.create(project, fields));
  }

  upload(id: string, data: Buffer, signal?: AbortSignal): Promise<TinyRecord> {
    return this.#call(signal, (project) => this.cloud.upload(project, id, data));
  }

  update(id: string, changes: RecordChanges, signal?: AbortSignal): Promise<TinyRecord> {
    return this.#call(signal, (project) => this.cloud.update(project, id, changes));
  }

  delete(id: string, signal?: AbortSignal): Promise<void> {
    return this.#call(signal, (project) => this.cloud.delete(project, id));
  }

  read(id: string, signal?: AbortSignal): Promise<Buffer> {
    return this.#call(signal, (project) => this.cloud.read(project, id));
  }

  async #call<T>(signal: AbortSignal | undefined, request: (project: string) => T): Promise<T> {
    // A real cloud answers later: the caller must never rely on a synchronous answer.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (signal?.aborted) throw new VisorError('timeout', `tinycloud ${this.cloud.name}: the request was aborted`);
    try {
      return request(this.cloud.authenticate(this.project, this.token));
    } catch (error) {
      if (!(error instanceof TinyCloudError)) throw error;
      throw new VisorError(kindByStatus[error.status], `tinycloud ${this.cloud.name}: ${error.message}`, {
        cause: error,
      });
    }
  }
}
