# Compares examples/hf-parity.ts exports with transformers' LlamaForCausalLM / GPTNeoXForCausalLM.
# Usage: python3 examples/hf_parity.py [out/hf-parity]
import json, os, sys, traceback
import torch, transformers
from transformers import AutoConfig, AutoModelForCausalLM
print('torch', torch.__version__, 'transformers', transformers.__version__, flush=True)
root = sys.argv[1] if len(sys.argv) > 1 else 'out/hf-parity'
for case in sorted(os.listdir(root)):
    d = f'{root}/{case}'
    if not os.path.isdir(d): continue
    try:
        cfg = AutoConfig.from_pretrained(d)
        m, info = AutoModelForCausalLM.from_pretrained(d, config=cfg, dtype=torch.float64, attn_implementation='eager', output_loading_info=True)
        m.eval()
        ids = torch.tensor(json.load(open(f'{d}/ids.json')))
        ref = torch.tensor(json.load(open(f'{d}/logits.json')), dtype=torch.float64)
        with torch.no_grad():
            out = m(ids, labels=ids)
        diff = (out.logits - ref.view_as(out.logits)).abs().max().item()
        # prefix-only check (positions < L0) isolates rope-scaling differences from the rest
        dpre = (out.logits[:, :16] - ref.view_as(out.logits)[:, :16]).abs().max().item()
        keys = {k: v for k, v in info.items() if v}
        print(f'{case}: max|Δlogits| {diff:.3e} (first 16 positions {dpre:.3e}); loss HF {out.loss.item():.10f} ours {json.load(open(f"{d}/loss.json")):.10f}; loading {keys}', flush=True)
    except Exception:
        print(case, 'FAILED'); traceback.print_exc()
