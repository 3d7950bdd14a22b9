/**
 * visor/runtime: visor assembled from a config, for applications that embed it and for plugin
 * tests that load their plugin the way visor does (by name, through the config's `plugins`).
 */
export { loadSetup, openRuntime, type Runtime, type RuntimeOptions, type RuntimeSetup } from './open-runtime.js';
export type { BuiltTargets, Publish } from './services.js';
export { builtinPlugins, builtinRegistry } from '../builtins.js';
