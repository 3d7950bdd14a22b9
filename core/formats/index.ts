/**
 * Image formats: detection from content, safety inspection before conversion or upload, and
 * conversion with qemu-img. See README.md beside this file for what is refused and why.
 */
export {
  bufferReader,
  openFileReader,
  sliceReader,
  countingReader,
  cachingReader,
  readExact,
  type ImageReader,
  type FileImageReader,
  type CountingReader,
} from './reader.js';
export { detectFormat } from './detect.js';
export { inspectImage, type InspectOptions } from './inspect.js';
export { convertImage, type ConvertOptions, type ConvertResult } from './convert.js';
export {
  qemuImgInfo,
  runQemuImg,
  qemuReadFormat,
  qemuWriteFormat,
  installHint as qemuImgInstallHint,
  type QemuImgInfo,
  type QemuImgOptions,
} from './qemu-img.js';
export { listTarMembers, tarMemberReader, type TarListing } from './tar.js';
export { parseVmdkDescriptor, type VmdkDescriptor, type VmdkExtent } from './vmdk-descriptor.js';
export {
  detectedFormats,
  refusedFormats,
  type DetectedFormat,
  type Detection,
  type InspectionReport,
  type InspectedMember,
  type OvaLayout,
  type PartitionTable,
  type Problem,
  type TarMember,
} from './types.js';
export { InspectingStream, type StreamInspectionOptions, type StreamVerdict } from './stream-inspector.js';
