// Public testing utilities: gradient checks and fast-check arbitraries.
export {
  gradcheck,
  gradcheckDevices,
  type GradcheckOptions,
  type GradcheckReport,
  type DeviceCheckOptions,
} from './gradcheck.js';
export * from './arbitraries.js';
