"""Dequantize a GGUF checkpoint into a bf16 Hugging Face checkpoint vLLM can load.

Runs inside the *engine* virtualenv (transformers, gguf, accelerate live there, not in the
analysis env), as ``python convert_gguf.py GGUF_FILE OUT_DIR``. Standalone on purpose: it
imports nothing from inferlab. Writes to OUT_DIR.tmp and renames, so a killed conversion
never leaves a half checkpoint that looks complete.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def convert(gguf_file: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf_file.parent), gguf_file.name
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.bfloat16)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    # The GGUF loader leaves a quantization_config behind although the weights are now
    # dequantized; vLLM would try to honour it. Rebuild a plain model from a clean config.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict(), strict=False)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: convert_gguf.py GGUF_FILE OUT_DIR")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
