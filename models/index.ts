// models: LLaMA and GPT-NeoX decoders with the RoPE scaling family (linear/PI, NTK, dynamic NTK, YaRN,
// llama3) and CLEX continuous length extrapolation; KV-cache generation; tokenizers (character, Hugging
// Face tokenizer.json); Hugging Face folders in (fromPretrained) and out (model.savePretrained).
export {
  LlamaConfig,
  GPTNeoXConfig,
  normalizeRopeScaling,
  queryLogScale,
  ROPE_SCALING_TYPES,
  type RopeScaling,
  type RopeScalingType,
  type LlamaConfigInput,
  type GPTNeoXConfigInput,
} from './config.js';
export {
  RotaryEmbedding,
  sameFrequencies,
  type FrequencyState,
  type RotaryTables,
  type TableRequest,
} from './rope-scaling.js';
export {
  CLEX,
  ODELinear,
  chunkedTrainingPositions,
  sampleTrainingPositions,
  type ClexSample,
  type ClexOptions,
  type TrainingPositions,
} from './clex/index.js';
export {
  clexOdeLearningRate,
  clexOdeParamGroup,
  clexParamGroups,
  clipClexGradNorm,
  type ClexParamGroup,
} from './clex/optim.js';
export {
  CausalLM,
  IGNORE_INDEX,
  shiftedLoss,
  type CausalLMOutput,
  type ForwardOptions,
  type ModelOptions,
  type ResidualStream,
} from './causal-lm.js';
export {
  LlamaForCausalLM,
  LlamaModel,
  LlamaDecoderLayer,
  LlamaAttention,
  LlamaMLP,
  type JointProjection,
} from './llama.js';
export { GPTNeoXForCausalLM, GPTNeoXModel, GPTNeoXLayer, GPTNeoXAttention, GPTNeoXMLP } from './gptneox.js';
export { DecodeState, KVCache, type DecodeStep, type DecodingModel, type TableChangePolicy } from './decode-state.js';
export { generate, sampleToken, type GenerateOptions, type GenerativeModel } from './generate.js';
export { CharTokenizer, ByteTokenizer } from './tokenizer.js';
export { HFTokenizer, Tokenizer, type EncodeOptions, type DecodeOptions } from './hf-tokenizer.js';
export { fromPretrained, type FromPretrainedOptions } from './pretrained.js';
export { parseShardSize, type PretrainedModel, type SavePretrainedOptions, type SaveDType } from './hf-folder.js';
