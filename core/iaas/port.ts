/**
 * The IaaS driver port: one instance per configured cloud. Its full contract (list, get,
 * create, updateMetadata, retire, download, capabilities) is defined with the first adapter.
 */
export interface IaasDriver {
  readonly adapter: string;
  /** Releases clients and sessions; safe to call twice. */
  close(): Promise<void>;
}
