/**
 * one.imagepool.info's filter flag per `ownership` option (a module of its own: the plugin reads
 * it without loading the client).
 */
export const poolFilters = { all: -2, mine: -3, mineAndGroups: -1, primaryGroup: -4 } as const;
export type PoolFilter = keyof typeof poolFilters;
