// Shared with the exported contract suites (core/testing, public as visor/testing).
export { bufferContent, randomImageBytes } from '../../core/testing/content.js';
