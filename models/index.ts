// models: LLaMA and GPT-NeoX decoders with the RoPE scaling family (linear/PI, NTK, dynamic NTK, YaRN)
// and CLEX continuous length extrapolation; KV-cache generation; a character tokenizer.
export { LlamaConfig, GPTNeoXConfig, normalizeRopeScaling, type RopeScaling, type RopeScalingType, type LlamaConfigInput, type GPTNeoXConfigInput } from './config.js';
export { RotaryEmbedding, type RotaryTables, type TableRequest } from './rotary.js';
export { CLEX, ODELinear, sampleTrainingPositions, type ClexSample, type ClexOptions } from './clex.js';
export { CausalLM, shiftedLoss, type CausalLMOutput, type ForwardOptions, type ModelOptions } from './causal-lm.js';
export { LlamaForCausalLM, LlamaModel, LlamaDecoderLayer, LlamaAttention, LlamaMLP } from './llama.js';
export { GPTNeoXForCausalLM, GPTNeoXModel, GPTNeoXLayer, GPTNeoXAttention, GPTNeoXMLP } from './gptneox.js';
export { KVCache } from './kv-cache.js';
export { generate, sampleToken, type GenerateOptions } from './generate.js';
export { CharTokenizer, ByteTokenizer, type Tokenizer } from './tokenizer.js';
