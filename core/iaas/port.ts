import type { Readable } from 'node:stream';
import type { Access, Checksums, ChecksumAlgorithm, ContainerFormat, DiskFormat, Image } from '../image/model.js';
import type { ByteRange } from '../store/port.js';

/**
 * The IaaS driver port (DESIGN.md §4): one driver instance per configured cloud. It must fit
 * OpenStack Glance, OpenNebula, Eucalyptus (EC2 + Walrus) and Nimbus (Cumulus); each adapter's
 * README says how its cloud maps onto it, and docs/iaas-contract.md compares the four.
 */

/**
 * Ownership marker written into every image visor creates in a cloud. Only images marked with
 * this agent and this target are ever changed or removed by the agent; everything else in the
 * cloud — other targets' copies included — is left alone.
 */
export interface Markers {
  /** Id of the agent instance that created the image (config `agent.id`). */
  agent: string;
  /**
   * The target (the `clouds:` entry) the copy belongs to: two targets of one agent in the same
   * cloud or project never touch each other's copies. Always written; absent only on images made
   * before markers named their target (the older scheme, claimed as docs/ownership.md says).
   */
  target?: string;
  /** The catalog image it is a copy of. */
  imageId: string;
  /** sha256 of the catalog image's content (before any format conversion): a change means "replace". */
  sha256: string;
  /** The catalog image's metadata revision last written to the cloud: a change means "update metadata". */
  revision: number;
}

/**
 * Whose image an updating or destructive action may touch, as the planner decided. Checked by
 * the planner, again by the executor on a fresh read, and by the driver just before it acts.
 * - `target`: the markers name this agent and this target (and the catalog image);
 * - `legacy`: the older scheme — this agent, no target — and the planner found this target to be
 *   the one that claims it (see docs/ownership.md);
 * - `none`: no markers at all (adopting an unmarked image).
 */
export type Claim =
  | { owner: 'target'; agent: string; target: string; imageId: string }
  | { owner: 'legacy'; agent: string; imageId: string }
  | { owner: 'none' };

export const retireModes = ['hide', 'disable', 'delete'] as const;
export type RetireMode = (typeof retireModes)[number];

/** Lifecycle of an image inside a cloud, normalised across the four clouds. */
export const cloudImageStates = [
  'pending', // created, bits not yet usable (Glance queued/saving/importing, ONE LOCKED, EC2 pending)
  'active', // usable
  'disabled', // exists but cannot be used (Glance deactivated, ONE DISABLED, deregistered-but-kept)
  'error', // failed (Glance killed, ONE ERROR, EC2 failed)
  'deleted', // on its way out (Glance pending_delete/deleted)
] as const;
export type CloudImageState = (typeof cloudImageStates)[number];

/** An image as found in a cloud, mapped to generic terms by the adapter's pure mapper. */
export interface CloudImage {
  /** The cloud's own id (Glance UUID, ONE numeric id as text, AMI id, Cumulus object key). */
  nativeId: string;
  name: string;
  state: CloudImageState;
  /** Hidden from default listings (Glance os_hidden, renamed/expired in ONE). */
  hidden: boolean;
  /** Attached to running VMs right now; such an image must never be deleted (ONE USED). */
  inUse: boolean;
  access: Access;
  diskFormat?: DiskFormat;
  containerFormat?: ContainerFormat;
  /** Bytes stored in the cloud, when it says. */
  size?: number;
  /** Checksums the cloud reports (e.g. Glance: md5 + sha512 multihash). */
  checksums: Checksums;
  /** Present exactly when the image carries visor's ownership marker. */
  markers?: Markers;
  /** Generic metadata read back from the cloud (name, architecture, os, properties, ...). */
  metadata: Partial<
    Pick<Image, 'name' | 'architecture' | 'type' | 'minDisk' | 'minRam' | 'os' | 'tags' | 'properties' | 'virtualSize'>
  >;
  createdAt?: string;
  updatedAt?: string;
}

/** The bytes to put into a cloud: already in the format the cloud gets. */
export interface ContentSource {
  size: number;
  /** Of exactly these bytes; drivers verify the cloud's copy against them where it reports any. */
  checksums: Required<Checksums>;
  diskFormat: DiskFormat;
  containerFormat: ContainerFormat;
  /** Opens a fresh stream of the bytes (again on every call: retries and multipart need it). */
  open(range?: ByteRange): Promise<Readable>;
  /** A URL the cloud can fetch the bytes from (served by the agent with a one-time token), if any. */
  url?: string;
}

export interface DriverCallOptions {
  signal?: AbortSignal;
}

export interface ClaimedCallOptions extends DriverCallOptions {
  /**
   * Whose image this must be: the driver re-reads the image just before it changes anything and
   * refuses (`conflict`, nothing changed) when its markers do not fit (core/iaas/markers.ts).
   */
  claim?: Claim;
}

export interface CreateRequest extends DriverCallOptions {
  /** Generic metadata to write, already translated for this target (name, access, format). */
  image: Image;
  markers: Markers;
  content: ContentSource;
  /**
   * The deadline of the whole create (upload or import, waiting until usable, verifying): the
   * driver gives up when it passes, removes what it made, and throws `timeout`. It is the
   * caller's to set — the agent passes what is left of the action's `sync.timeouts.action` —
   * and the only create deadline there is: a driver has no create deadline of its own.
   */
  timeoutMs: number;
  onProgress?: (bytesSent: number) => void;
}

export interface DriverCapabilities {
  /** Disk formats the cloud accepts; others must be converted first. */
  diskFormats: readonly DiskFormat[];
  containerFormats: readonly ContainerFormat[];
  /** Retire modes the cloud supports; asking for another one is an `unsupported` error. */
  retireModes: readonly RetireMode[];
  /** Access levels the cloud can express. */
  access: readonly Access[];
  /** Checksums the cloud reports after an upload (what `create` verifies). */
  reportsChecksums: readonly ChecksumAlgorithm[];
  reportsSize: boolean;
  /** The cloud can fetch an image from `ContentSource.url` instead of being sent the bytes. */
  importFromUrl: boolean;
  /** `create` can only work from `ContentSource.url` (OpenNebula with a remote front-end). */
  requiresUrl: boolean;
  /** Free-form key/value properties survive a round trip. */
  properties: boolean;
  tags: boolean;
  /** `download` is available (pull and migrate). */
  download: boolean;
  /** The driver can tell whether an image is in use. */
  detectsInUse: boolean;
  /**
   * The soft retire modes `reveal` undoes (hide: shown again; disable: usable again), so that an
   * image brought back (`visor undeprecate`) gets its existing copy back instead of a new upload.
   * Absent or empty: a hidden or disabled copy is replaced by a new one.
   */
  reveals?: readonly RetireMode[];
  /** Longest property value the cloud stores, when limited. */
  maxPropertyLength?: number;
  /**
   * Sharing an image with chosen principals of the cloud (`IaasDriver.share`); absent when the
   * cloud cannot, and then `share` refuses as `unsupported` (an image is never made public instead).
   */
  sharing?: SharingCapabilities;
}

/** How a cloud shares an image with chosen principals. */
export interface SharingCapabilities {
  /** What a principal is here: Glance project ids, OpenNebula groups, EC2 account ids. */
  principal: 'project' | 'group' | 'account' | 'user';
  /** The most principals one image can be shared with (OpenNebula: its one group); unlimited when absent. */
  maxPrincipals?: number;
  /** Members must accept a shared image before they see it in their listings (Glance). */
  acceptance: boolean;
}

/**
 * One principal an image is shared with, and the state of its membership:
 * `accepted` / `pending` / `rejected` where members accept (Glance), `granted` where they need not.
 */
export const memberStatuses = ['accepted', 'pending', 'rejected', 'granted'] as const;
export type MemberStatus = (typeof memberStatuses)[number];
export interface ShareMember {
  principal: string;
  status: MemberStatus;
}

/** The desired sharing of one image: add what is missing, remove only what visor added. */
export interface ShareRequest extends ClaimedCallOptions {
  /** Principals that should have the image, in the cloud's own terms. */
  wanted: readonly string[];
  /**
   * Principals visor added earlier (the agent's records): the only ones it may remove. A member
   * added by anyone else stays, wanted or not.
   */
  managed: readonly string[];
}

export interface ShareResult {
  /** The image's members after the change, as the cloud reports them. */
  members: ShareMember[];
  /** Principals this call added (now to be recorded as visor's). */
  added: string[];
  /** Principals this call removed. */
  removed: string[];
}

export interface IaasDriver {
  readonly adapter: string;
  readonly capabilities: DriverCapabilities;
  /**
   * The images of this target's own project, user or account (where the cloud can tell them
   * apart; each adapter's README says how), following every page.
   */
  list(options?: DriverCallOptions): Promise<CloudImage[]>;
  /**
   * Names what `list` looks at: the cloud and the project/user/account whose images it lists.
   * Two targets with equal scopes see the same images (which matters when claiming images of the
   * older marker scheme). Optional for plugins: without it, every target of the same adapter
   * is taken to share the scope.
   */
  scope?(options?: DriverCallOptions): Promise<string>;
  /** Throws `notFound` when there is no such image. */
  get(nativeId: string, options?: DriverCallOptions): Promise<CloudImage>;
  /**
   * Registers and uploads (or imports) an image, waits until it is usable, and verifies size and
   * checksums where the cloud reports them. On any failure — including a mismatch (`integrity`)
   * or the deadline (`timeout`) — whatever was created in the cloud is removed (as `discard`
   * does) before the error is thrown, and the error says whether that worked.
   */
  create(request: CreateRequest): Promise<CloudImage>;
  /** Rewrites metadata and markers without touching the bits; checks `options.claim` first. */
  updateMetadata(nativeId: string, image: Image, markers: Markers, options?: ClaimedCallOptions): Promise<CloudImage>;
  /**
   * hide | disable | delete; checks `options.claim` first. Refuses (`conflict`) to delete an
   * image that is in use.
   */
  retire(nativeId: string, mode: RetireMode, options?: ClaimedCallOptions): Promise<void>;
  /**
   * Undoes `retire(hide)` and `retire(disable)` (those listed in `capabilities.reveals`): the copy,
   * bits untouched and native id kept, is visible and usable again. Checks `options.claim` first;
   * a copy already visible and usable is left as it is. Present exactly when `reveals` is not empty.
   */
  reveal?(nativeId: string, options?: ClaimedCallOptions): Promise<void>;
  /**
   * Removes an image the agent made and must not keep — the leftovers of a create that failed
   * or was cut off, a copy whose markers did not stick — entirely, whatever retire modes the
   * target's policy or the driver's options allow: cleaning up never hides or disables. Checks
   * `options.claim` first. Already gone is success; an image in use is refused (`conflict`).
   */
  discard(nativeId: string, options?: ClaimedCallOptions): Promise<void>;
  /**
   * Who an image is shared with, read from the cloud. Present exactly when
   * `capabilities.sharing` is; throws `notFound` when there is no such image.
   */
  members?(nativeId: string, options?: DriverCallOptions): Promise<ShareMember[]>;
  /**
   * Brings an image's sharing to the request, idempotently: adds the wanted principals that are
   * missing, removes the `managed` ones no longer wanted, leaves every other member alone, and
   * never widens the image's visibility (a public or private image is refused as `conflict`:
   * the metadata update makes it `shared` first). Checks `options.claim` first. A principal the
   * cloud does not know is `notFound`; a cloud that cannot share refuses as `unsupported`.
   */
  share?(nativeId: string, request: ShareRequest): Promise<ShareResult>;
  /** Streams the image's bits (pull from a cloud, migrate). */
  download(
    nativeId: string,
    options?: DriverCallOptions & { range?: ByteRange },
  ): Promise<{ stream: Readable; size?: number }>;
  /** Releases clients and sessions; safe to call twice. */
  close(): Promise<void>;
}
