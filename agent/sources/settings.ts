import type { SubscriptionConfig } from '../../core/config/load.js';
import type { Subscription } from './importer.js';

/** The importer's settings from a subscription's config. */
export function subscriptionLimits(config: SubscriptionConfig): Omit<Subscription, 'name'> {
  return {
    filters: config.filters,
    retire: config.retire,
    ...(config.maxBandwidth !== undefined ? { maxBandwidth: config.maxBandwidth } : {}),
    concurrency: config.concurrency,
    access: config.access,
  };
}
