// io: safetensors files and crash-safe, resumable training checkpoints.
export {
  saveSafetensors,
  loadSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  parseSafetensors,
  serializeSafetensors,
  SafetensorsError,
  type Metadata,
  type LoadSafetensorsOptions,
  type SerializeOptions,
  type FloatFormat,
  type TensorInfo,
} from './safetensors.js';
export {
  saveCheckpoint,
  loadCheckpoint,
  CheckpointError,
  MODEL_FILE,
  OPTIMIZER_FILE,
  CONFIG_FILE,
  TRAINER_STATE_FILE,
  type CheckpointContents,
  type LoadCheckpointOptions,
  type LoadedCheckpoint,
  type TrainerState,
} from './checkpoint.js';
export { writeFileAtomic } from './atomic.js';
