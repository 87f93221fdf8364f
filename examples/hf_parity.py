# The transformers side of `npm run parity` (scripts/parity.sh runs the steps in order):
#   python3 examples/hf_parity.py make  ROOT   tiny random LLaMA / GPT-NeoX models and a small BPE tokenizer,
#                                              save_pretrained into ROOT/hf/<case>, with reference logits and ids
#   npx tsx examples/hf-parity.ts        ROOT   dawngrad: fromPretrained + compare, then savePretrained into ROOT/ours/<case>
#   python3 examples/hf_parity.py check ROOT   from_pretrained dawngrad's folders and compare logits and token ids
# Logits are compared in float64 (max |Δ| must be ≤ 1e-4), token ids exactly.
import json, os, sys, traceback

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPTNeoXConfig, LlamaConfig, PreTrainedTokenizerFast

TOL = 1e-4
T = 40  # sequence length (past L0 = 16, so the scaled rope rules matter)
TEXTS = ['the keeper of the light', 'Hello, world! 123', 'naïve café — 東京 🎉', '  two  spaces\tand a tab\n', 'a , b . c ?']
VOCAB = 300


def fixed_ids(vocab):
    return [[(i * 13 + 7 + 5 * row) % vocab for i in range(T)] for row in range(2)]


def load_kwargs(dtype):
    # transformers ≥ 4.56 names it dtype; older versions torch_dtype.
    major_minor = tuple(int(x) for x in transformers.__version__.split('.')[:2])
    return {'dtype': dtype} if major_minor >= (4, 56) else {'torch_dtype': dtype}


def llama(**extra):
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=16, rope_theta=5000.0, initializer_range=0.2)
    cfg.update(extra)
    return LlamaConfig(**cfg)


def neox(**extra):
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=16, rotary_pct=0.25, rotary_emb_base=5000, initializer_range=0.2)
    cfg.update(extra)
    return GPTNeoXConfig(**cfg)


CASES = {
    'llama_gqa': lambda: (llama(), torch.float32),
    'llama_tied': lambda: (llama(tie_word_embeddings=True), torch.float32),
    'llama_head_dim_bias': lambda: (llama(head_dim=32, attention_bias=True, mlp_bias=True), torch.float32),
    'llama_linear': lambda: (llama(rope_scaling={'rope_type': 'linear', 'factor': 2.0}), torch.float32),
    'llama_llama3': lambda: (llama(max_position_embeddings=64, rope_scaling={'rope_type': 'llama3', 'factor': 4.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0, 'original_max_position_embeddings': 16}), torch.float32),
    'llama_dynamic': lambda: (llama(rope_scaling={'rope_type': 'dynamic', 'factor': 2.0}), torch.float32),
    'llama_yarn': lambda: (llama(rope_scaling={'rope_type': 'yarn', 'factor': 4.0, 'original_max_position_embeddings': 16}), torch.float32),
    'llama_bf16': lambda: (llama(), torch.bfloat16),
    'neox_plain': lambda: (neox(), torch.float32),
    # Older GPTNeoXConfig validation wants exactly the two legacy keys.
    'neox_dynamic': lambda: (neox(rope_scaling={'type': 'dynamic', 'factor': 2.0}), torch.float32),
    'neox_sequential_f16': lambda: (neox(use_parallel_residual=False), torch.float16),
}


def logits_of(model_dir, ids):
    m = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation='eager', **load_kwargs(torch.float64))
    m.eval()
    with torch.no_grad():
        return m(torch.tensor(ids)).logits


def make_tokenizer(root, corpus):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - 1, special_tokens=['<|endoftext|>'], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([line for line in open(corpus, encoding='utf8')], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token='<|endoftext|>')
    return fast


def make(root):
    torch.manual_seed(0)
    fast = make_tokenizer(root, os.path.join(os.path.dirname(__file__), 'data', 'corpus.txt'))
    for name, build in CASES.items():
        cfg, dtype = build()
        d = f'{root}/hf/{name}'
        model = AutoModelForCausalLM.from_config(cfg)
        model.to(dtype).save_pretrained(d, safe_serialization=True, max_shard_size='100KB' if name.startswith('neox') else '5GB')
        fast.save_pretrained(d)
        ids = fixed_ids(cfg.vocab_size)
        ref = logits_of(d, ids)  # reloaded in float64 from the stored (possibly 16-bit) weights
        json.dump({'ids': ids, 'logits': ref.flatten().tolist(), 'shape': list(ref.shape)}, open(f'{d}/parity.json', 'w'))
        json.dump({t: fast(t, add_special_tokens=False).input_ids for t in TEXTS}, open(f'{d}/token_ids.json', 'w'))
    print(f'torch {torch.__version__}, transformers {transformers.__version__}: wrote {len(CASES)} folders to {root}/hf')


def check(root):
    failures = 0
    base = f'{root}/ours'
    for name in sorted(os.listdir(base)):
        d = f'{base}/{name}'
        try:
            ours = json.load(open(f'{d}/parity.json'))
            hf = logits_of(d, ours['ids'])
            ref = torch.tensor(ours['logits'], dtype=torch.float64).view_as(hf)
            diff = (hf - ref).abs().max().item()
            tok = AutoTokenizer.from_pretrained(d)
            our_ids = json.load(open(f'{d}/token_ids.json'))
            tok_ok = all(tok(t, add_special_tokens=False).input_ids == ids for t, ids in our_ids.items())
            round_trip = all(tok.decode(ids) == t for t, ids in our_ids.items())
            ok = diff <= TOL and tok_ok and round_trip
            failures += not ok
            print(f'dawngrad → transformers {name}: max|Δlogits| {diff:.2e}; token ids {"equal" if tok_ok else "DIFFER"}; decode {"lossless" if round_trip else "DIFFERS"} {"ok" if ok else "FAIL"}', flush=True)
        except Exception:
            failures += 1
            print(f'dawngrad → transformers {name}: FAILED')
            traceback.print_exc()
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    if len(sys.argv) != 3 or sys.argv[1] not in ('make', 'check'):
        sys.exit('usage: python3 examples/hf_parity.py make|check ROOT')
    (make if sys.argv[1] == 'make' else check)(sys.argv[2])
