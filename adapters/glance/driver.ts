import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { rootCertificates } from 'node:tls';
import { isVisorError, VisorError } from '../../core/errors.js';
import {
  checkFormats,
  checkRetireMode,
  cleanUpAfter,
  Deadline,
  pollUntil,
  removeQuietly,
  shareDelta,
  checkSharing,
} from '../../core/iaas/kit/index.js';
import { checkClaim } from '../../core/iaas/markers.js';
import type {
  ClaimedCallOptions,
  CloudImage,
  CreateRequest,
  DriverCallOptions,
  DriverCapabilities,
  IaasDriver,
  Markers,
  RetireMode,
  ShareMember,
  ShareRequest,
  ShareResult,
} from '../../core/iaas/port.js';
import type { Image } from '../../core/image/model.js';
import { silentLogger, type Logger } from '../../core/logging/logger.js';
import type { ByteRange } from '../../core/store/port.js';
import { GlanceClient } from './client.js';
import { KeystoneSession, type KeystoneClock, type KeystoneCredentials } from './client-keystone.js';
import { openVerified, verifyCloudCopy, type UploadVerdict } from './driver-upload.js';
import { glanceContainerFormats, glanceDiskFormats, toCloudImage, toCreateBody, toPatch } from './mapper.js';
import type { GlanceImage, GlanceMember, KeystoneInterface } from './schema.js';

export type GlanceImportMethod = 'upload' | 'glance-direct' | 'web-download';

export interface GlanceDriverOptions {
  authUrl: string;
  region?: string;
  interface: KeystoneInterface;
  credentials: KeystoneCredentials;
  /** PEM text of extra CAs to trust (added to Node's own roots). */
  caBundle?: string;
  importMethod: GlanceImportMethod;
  pageSize: number;
  requestTimeoutMs: number;
  pollIntervalMs: number;
  retireModes: readonly RetireMode[];
  /**
   * Credentials of member projects: a shared image's membership is accepted as that project, so
   * that it shows in the project's listings; other members stay `pending` until they accept.
   */
  memberCredentials?: readonly KeystoneCredentials[];
  logger?: Logger;
  clock?: KeystoneClock;
}

/** One member project's own session: what accepting a membership on its behalf needs. */
interface MemberAccess {
  session: KeystoneSession;
  client: GlanceClient;
}

/**
 * The IaasDriver for OpenStack Glance v2 behind Keystone v3. See README.md for the native
 * calls, the field mapping and why the capabilities are what they are.
 */
export class GlanceDriver implements IaasDriver {
  readonly adapter = 'glance';
  readonly capabilities: DriverCapabilities;
  readonly #options: GlanceDriverOptions;
  readonly #logger: Logger;
  readonly #httpAgent: HttpAgent;
  readonly #httpsAgent: HttpsAgent;
  readonly #session: KeystoneSession;
  readonly #client: GlanceClient;
  #importMethods: Promise<string[]> | undefined;
  /** Member project id -> its session; resolved once, on the first share. */
  #memberAccess: Promise<Map<string, MemberAccess>> | undefined;
  #closed = false;

  constructor(options: GlanceDriverOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#httpAgent = new HttpAgent({ keepAlive: true });
    this.#httpsAgent = new HttpsAgent({
      keepAlive: true,
      ...(options.caBundle ? { ca: [...rootCertificates, options.caBundle] } : {}),
    });
    this.#session = new KeystoneSession({
      authUrl: options.authUrl,
      credentials: options.credentials,
      interface: options.interface,
      ...(options.region !== undefined ? { region: options.region } : {}),
      httpAgent: this.#httpAgent,
      httpsAgent: this.#httpsAgent,
      timeoutMs: options.requestTimeoutMs,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    this.#client = new GlanceClient({
      session: this.#session,
      httpAgent: this.#httpAgent,
      httpsAgent: this.#httpsAgent,
      timeoutMs: options.requestTimeoutMs,
    });
    this.capabilities = Object.freeze({
      diskFormats: glanceDiskFormats,
      containerFormats: glanceContainerFormats,
      retireModes: options.retireModes,
      access: ['public', 'private', 'shared'],
      reportsChecksums: ['md5', 'sha512'],
      reportsSize: true,
      importFromUrl: options.importMethod === 'web-download',
      requiresUrl: false,
      properties: true,
      tags: true,
      download: true,
      detectsInUse: false,
      // os_hidden=false; deactivated -> POST .../actions/reactivate.
      reveals: ['hide', 'disable'],
      maxPropertyLength: 65535,
      sharing: Object.freeze({ principal: 'project', acceptance: true } as const),
    } satisfies DriverCapabilities);
  }

  /**
   * The images owned by the token's project, whatever their visibility: other projects' public
   * and shared images are not this target's (an admin token would otherwise list every project's).
   */
  async list(options: DriverCallOptions = {}): Promise<CloudImage[]> {
    const seen = new Map<string, CloudImage>();
    const owner = await this.#projectId();
    // Hidden images are left out of Glance's default listing; a retired-by-hiding image is still ours.
    for (const hidden of ['false', 'true']) {
      const limit = String(this.#options.pageSize);
      let query: Record<string, string> | undefined = { limit, os_hidden: hidden, owner, visibility: 'all' };
      while (query) {
        const page: { images: GlanceImage[]; next?: Record<string, string> } = await this.#client.listPage(
          query,
          options.signal,
        );
        for (const image of page.images) seen.set(image.id, toCloudImage(image));
        query = page.next;
      }
    }
    return [...seen.values()];
  }

  async get(nativeId: string, options: DriverCallOptions = {}): Promise<CloudImage> {
    return toCloudImage(await this.#client.getImage(nativeId, options.signal));
  }

  /** The Glance endpoint and the token's project: what `list` looks at. */
  async scope(): Promise<string> {
    const token = await this.#session.token();
    return `glance ${this.#session.endpoint(token, 'image').replace(/\/+$/, '')} project ${await this.#projectId()}`;
  }

  async create(request: CreateRequest): Promise<CloudImage> {
    const { image, markers, content } = request;
    checkFormats('Glance', this.capabilities, content);
    const body = toCreateBody(image, markers, content);
    const method = await this.#methodFor(request);
    const deadline = new Deadline(request.timeoutMs, request.signal);
    const verdict: UploadVerdict = { bytes: 0 };
    const started = Date.now();
    let created: GlanceImage | undefined;
    let lastStatus: string | undefined;
    let phase = 'creating the record';
    try {
      created = await this.#client.createImage(body, deadline.signal);
      lastStatus = created.status;
      const id = created.id;
      const open = () => openVerified(content, verdict, request.onProgress);
      if (method === 'upload') {
        phase = 'uploading the data';
        await this.#client.uploadFile(id, open, deadline.signal);
      } else if (method === 'glance-direct') {
        phase = 'staging the data';
        await this.#client.stage(id, open, deadline.signal);
        phase = 'starting the import';
        await this.#client.importImage(id, 'glance-direct', undefined, deadline.signal);
      } else {
        phase = 'starting the import';
        await this.#client.importImage(id, 'web-download', content.url, deadline.signal);
      }
      phase = method === 'upload' ? 'waiting until active' : 'waiting for the import';
      let final = await this.#waitUntilUsable(id, method !== 'upload', deadline, (s) => (lastStatus = s));
      const { verified } = verifyCloudCopy(final, content);
      if (image.protected) {
        // Only once verified: a copy that fails before this point must stay deletable by the clean-up.
        phase = 'protecting the image';
        final = await this.#client.patch(id, [{ op: 'replace', path: '/protected', value: true }], deadline.signal);
      }
      if (!verified.some((v) => v !== 'size'))
        this.#logger.warn('Glance reported no checksum for the new image: only its size was verified', {
          nativeId: id,
        });
      this.#logger.info('image created in Glance', {
        nativeId: id,
        name: image.name,
        method,
        bytes: content.size,
        verified,
        seconds: (Date.now() - started) / 1000,
      });
      return toCloudImage(final);
    } catch (error) {
      // A verdict of the upload stream is the truth (axios wraps the stream's error in its own).
      const failure =
        verdict.failure ??
        deadline.failure(error, {
          timeout: () => {
            const which = created ? ` (${created.id})` : '';
            const seen = `Glance status when last read: ${lastStatus ?? 'none'}`;
            const within = `was not usable within ${deadline.ms / 1000} s`;
            return `Glance: image "${image.name}"${which} ${within} (stuck ${phase}; ${seen})`;
          },
          aborted: () => `Glance: creating image "${image.name}" was aborted`,
        });
      if (created) {
        const id = created.id;
        const remove = (signal: AbortSignal) => this.#client.deleteImage(id, signal);
        throw await cleanUpAfter(failure, remove, { what: `image ${id}`, logger: this.#logger });
      }
      if (failure.kind === 'unavailable' || failure.kind === 'timeout') await this.#discardOrphans(body, started);
      throw failure;
    } finally {
      deadline.dispose();
    }
  }

  async updateMetadata(nativeId: string, image: Image, markers: Markers, options: ClaimedCallOptions = {}) {
    const current = await this.#client.getImage(nativeId, options.signal);
    checkClaim(nativeId, toCloudImage(current).markers, options.claim, 'update');
    const operations = toPatch(current, image, markers);
    if (operations.length === 0) return toCloudImage(current);
    return toCloudImage(await this.#client.patch(nativeId, operations, options.signal));
  }

  async retire(nativeId: string, mode: RetireMode, options: ClaimedCallOptions = {}): Promise<void> {
    checkRetireMode('Glance', this.capabilities, mode, 'is not enabled for this Glance');
    const current = await this.#client.getImage(nativeId, options.signal);
    checkClaim(nativeId, toCloudImage(current).markers, options.claim, mode);
    if (mode === 'hide') {
      if (current.os_hidden !== true)
        await this.#client.patch(nativeId, [{ op: 'replace', path: '/os_hidden', value: true }], options.signal);
    } else if (mode === 'disable') {
      if (current.status === 'deactivated') return;
      if (current.status !== 'active')
        throw new VisorError(
          'conflict',
          `Glance: image ${nativeId} cannot be deactivated in status ${current.status} (only active images can)`,
        );
      try {
        await this.#client.deactivate(nativeId, options.signal);
      } catch (error) {
        if (isVisorError(error, 'forbidden')) {
          throw new VisorError(
            'forbidden',
            `${error.message} (this cloud's policy "deactivate" refuses ` +
              `these credentials; leave "disable" out of retireModes)`,
            { cause: error },
          );
        }
        throw error;
      }
    } else {
      await this.#delete(current, options.signal);
    }
  }

  /** Undoes hide and disable: reactivated where deactivated, then os_hidden=false; the bits and the id stay. */
  async reveal(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    const current = await this.#client.getImage(nativeId, options.signal);
    checkClaim(nativeId, toCloudImage(current).markers, options.claim, 'reveal');
    if (current.status === 'deactivated') await this.#client.reactivate(nativeId, options.signal);
    if (current.os_hidden === true)
      await this.#client.patch(nativeId, [{ op: 'replace', path: '/os_hidden', value: false }], options.signal);
  }

  /** DELETE, whatever retireModes allows: what a failed create or a broken copy leaves is removed. */
  async discard(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    let current: GlanceImage;
    try {
      current = await this.#client.getImage(nativeId, options.signal);
    } catch (error) {
      if (isVisorError(error, 'notFound')) return;
      throw error;
    }
    checkClaim(nativeId, toCloudImage(current).markers, options.claim, 'discard');
    await this.#delete(current, options.signal);
  }

  async download(nativeId: string, options: DriverCallOptions & { range?: ByteRange } = {}) {
    return this.#client.download(nativeId, options.range, options.signal);
  }

  /**
   * Glance keeps the members of an image that is no longer `shared` but puts them out of effect
   * and refuses to list them ("Only shared images have members"): such an image has none in effect.
   */
  async members(nativeId: string, options: DriverCallOptions = {}): Promise<ShareMember[]> {
    const image = await this.#client.getImage(nativeId, options.signal);
    if (image.visibility !== 'shared') return [];
    return (await this.#client.listMembers(nativeId, options.signal)).map(memberOf);
  }

  /**
   * Image members: the wanted projects added (`pending`), visor's unwanted ones removed, others
   * left; then each wanted membership still pending is accepted as the member project where its
   * credentials are configured. Glance gives members to `shared` images only: anything else is
   * refused here (`conflict`) rather than widened.
   */
  async share(nativeId: string, request: ShareRequest): Promise<ShareResult> {
    checkSharing('Glance', this.capabilities, request.wanted);
    const { signal } = request;
    const current = await this.#client.getImage(nativeId, signal);
    checkClaim(nativeId, toCloudImage(current).markers, request.claim, 'share');
    const before = current.visibility === 'shared' ? await this.#client.listMembers(nativeId, signal) : [];
    const { add, remove } = shareDelta(
      before.map((m) => m.member_id),
      request,
    );
    if (add.length > 0 && current.visibility !== 'shared') {
      const why = `Glance: image ${nativeId} is ${current.visibility}; only a shared image gets members`;
      throw new VisorError('conflict', `${why} (its visibility is not changed by sharing)`);
    }
    for (const project of remove) await this.#client.removeMember(nativeId, project, signal);
    for (const project of add) await this.#client.addMember(nativeId, project, signal);
    const wanted = new Set(request.wanted);
    const pending = (await this.#client.listMembers(nativeId, signal)).filter(
      (m) => m.status === 'pending' && wanted.has(m.member_id),
    );
    if (pending.length > 0 && (this.#options.memberCredentials?.length ?? 0) > 0) {
      const access = await this.#resolveMembers();
      for (const member of pending) {
        const own = access.get(member.member_id);
        if (own) await own.client.setMemberStatus(nativeId, member.member_id, 'accepted', signal);
      }
    }
    const members = (await this.#client.listMembers(nativeId, signal)).map(memberOf);
    return { members, added: add, removed: remove };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const members = await this.#memberAccess?.catch(() => undefined);
    for (const { session } of members?.values() ?? []) session.close();
    this.#session.close();
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }

  async #delete(current: GlanceImage, signal?: AbortSignal): Promise<void> {
    const nativeId = current.id;
    if (current.protected) {
      throw new VisorError(
        'conflict',
        `Glance: image ${nativeId} is protected and cannot be deleted (someone must clear its "protected" flag first)`,
      );
    }
    if (current.status === 'deactivated') {
      // Glance 25 deletes a deactivated image's record but leaves its data in the store: reactivate first.
      await this.#client.reactivate(nativeId, signal).catch((error: unknown) => {
        const why = 'could not reactivate a deactivated image before deleting it: Glance may keep its data';
        this.#logger.warn(why, { nativeId, error: (error as Error).message });
      });
    }
    await this.#client.deleteImage(nativeId, signal);
  }

  /** Sessions of the configured member projects, by project id (learnt from each one's token). */
  #resolveMembers(): Promise<Map<string, MemberAccess>> {
    this.#memberAccess ??= (async () => {
      const out = new Map<string, MemberAccess>();
      for (const credentials of this.#options.memberCredentials ?? []) {
        const session = new KeystoneSession({
          authUrl: this.#options.authUrl,
          credentials,
          interface: this.#options.interface,
          ...(this.#options.region !== undefined ? { region: this.#options.region } : {}),
          httpAgent: this.#httpAgent,
          httpsAgent: this.#httpsAgent,
          timeoutMs: this.#options.requestTimeoutMs,
          ...(this.#options.clock ? { clock: this.#options.clock } : {}),
        });
        const agents = { httpAgent: this.#httpAgent, httpsAgent: this.#httpsAgent };
        const client = new GlanceClient({ session, ...agents, timeoutMs: this.#options.requestTimeoutMs });
        const projectId = (await session.token()).projectId;
        if (projectId === undefined) {
          throw new VisorError('config', 'Glance: member credentials must be scoped to a project');
        }
        out.set(projectId, { session, client });
      }
      return out;
    })().catch((error: unknown) => {
      this.#memberAccess = undefined;
      throw error;
    });
    return this.#memberAccess;
  }

  /** The project the token is scoped to: the owner of every image this target makes. */
  async #projectId(): Promise<string> {
    const token = await this.#session.token();
    if (token.projectId === undefined) {
      const why = "Keystone gave a token that names no project: cannot tell which images are this project's";
      throw new VisorError('invalidResponse', why);
    }
    return token.projectId;
  }

  /** The configured way in, checked against what this cloud offers (GET /v2/info/import). */
  async #methodFor(request: CreateRequest): Promise<GlanceImportMethod> {
    let method = this.#options.importMethod;
    if (method === 'web-download' && request.content.url === undefined) {
      // No URL to give Glance: pushing the bytes is the fallback every cloud offers.
      this.#logger.debug('no content URL for web-download: uploading instead', { name: request.image.name });
      method = 'upload';
    }
    if (method === 'upload') return method;
    this.#importMethods ??= this.#client.importMethods(request.signal).catch((error: unknown) => {
      this.#importMethods = undefined;
      throw error;
    });
    const offered = await this.#importMethods;
    if (!offered.includes(method)) {
      throw new VisorError(
        'unsupported',
        `this Glance does not offer the ${method} import method (it offers: ${offered.join(', ') || 'none'}); ` +
          `set importMethod to one of those or to upload`,
      );
    }
    return method;
  }

  /**
   * Polls until the image is active and, after an import, until the import task has dropped its
   * lock (os_glance_import_task): an image turns active a moment before that, and deleting or
   * changing it inside that window races with the task.
   */
  async #waitUntilUsable(
    id: string,
    imported: boolean,
    deadline: Deadline,
    onStatus: (status: string) => void,
  ): Promise<GlanceImage> {
    return pollUntil({
      read: (signal) => this.#client.getImage(id, signal),
      intervalMs: this.#options.pollIntervalMs,
      signal: deadline.signal,
      retryReads: true,
      onReadFailure: (error) => {
        const meta = { nativeId: id, error: (error as Error).message };
        this.#logger.debug('reading the status of a new image failed; trying again', meta);
      },
      done: async (image) => {
        onStatus(image.status);
        const attributes = image as Record<string, unknown>;
        const locked =
          typeof attributes['os_glance_import_task'] === 'string' && attributes['os_glance_import_task'] !== '';
        if (image.status === 'active' && !locked) return true;
        if (image.status === 'killed')
          throw new VisorError('unavailable', `Glance: image ${id} was killed: its upload failed in the cloud`);
        if (image.status === 'deleted' || image.status === 'pending_delete')
          throw new VisorError('conflict', `Glance: image ${id} was deleted while it was being created`);
        const failedStores = attributes['os_glance_failed_import'];
        if (
          imported &&
          !locked &&
          typeof failedStores === 'string' &&
          failedStores !== '' &&
          image.status !== 'active'
        ) {
          const why = await this.#client.lastTaskFailure(id, deadline.signal);
          throw new VisorError(
            'unavailable',
            `Glance: the import of image ${id} failed (stores: ${failedStores})${why ? `: ${why}` : ''}`,
          );
        }
        return false;
      },
    });
  }

  /**
   * When the create call itself failed without an answer (timeout, connection lost), Glance may
   * still have created the record: find it by its markers and delete it if it never got data.
   */
  async #discardOrphans(body: Record<string, unknown>, since: number): Promise<void> {
    try {
      const owner = await this.#projectId();
      const query = {
        name: String(body['name']),
        visor_image_id: String(body['visor_image_id']),
        visor_sha256: String(body['visor_sha256']),
        status: 'queued',
        owner,
        limit: '50',
      };
      const page = await this.#client.listPage(query);
      for (const image of page.images) {
        // Another target's create of the same catalog image may be in flight right now: only ours goes.
        const ours = image['visor_agent'] === body['visor_agent'] && image['visor_target'] === body['visor_target'];
        if (!image.created_at || Date.parse(image.created_at) < since - 60_000 || !ours) continue;
        const remove = (signal: AbortSignal) => this.#client.deleteImage(image.id, signal);
        await removeQuietly(remove, { what: `image ${image.id}`, logger: this.#logger });
      }
    } catch (error) {
      this.#logger.debug('could not look for a half-created image', { error: (error as Error).message });
    }
  }
}

function memberOf(member: GlanceMember): ShareMember {
  return { principal: member.member_id, status: member.status };
}
