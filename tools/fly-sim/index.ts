/**
 * fly-sim — an offline Fly Machines API simulator. See README.md in this folder.
 *
 *   const sim = await startFlySim({ rateLimits: false });
 *   // FLY_FLAPS_BASE_URL=sim.url FLY_API_TOKEN=sim.token; reach machines via sim.proxyUrl + fly-force-instance-id
 *   await sim.close();
 */
export { startFlySim, type FlySim, type FlySimOptions, type FaultController, type RequestLogEntry } from './server/index.js';
export {
  ApiError,
  DEFAULT_TIMING,
  Engine,
  SETTLED_STATES,
  type BootContext,
  type EngineOptions,
  type ImageMapping,
  type MachineEvent,
  type MachineSnapshot,
  type MachineState,
  type SimTiming,
} from './engine/index.js';
export { ACTIONS, type Action, type ActiveFault, type FaultSpec } from './faults.js';
export { FLY_RATE_LIMITS, type BucketSpec, type RateLimitConfig } from './ratelimit.js';
export type { BootCommand, ExitInfo, LogLine } from './runner.js';
export {
  DIALECT_PATCHES,
  FlySpec,
  OPERATION_ALIASES,
  defaultSpecPath,
  loadSpec,
  referenceSpecPath,
  validateAgainstSpec,
  validateRecordedRequest,
  type OperationInfo,
  type SpecIssue,
  type SpecValidation,
  type ValidateOptions,
} from './spec.js';
export { ManualClock, REGIONS, realClock, type Clock } from './util.js';
