"""Training the extractive reader (a span head on all-MiniLM-L6-v2), one module per stage:

- `data`: the training questions (SQuAD-format files, de-duplicated by question id, per source);
- `windows`: questions and paragraphs cut into token windows, with the answer's token span;
- `loop`: the training loop, with resumable checkpoints;
- `export`: ONNX export, int8 quantisation, the reader folder and its model card;
- `evaluation`: scores on the dev part (gold paragraphs) and the news dev set;
- `head`: the span head refitted on the int8 body's hidden states (`python -m qa.training.head`);
- `top`: the last transformer layer and the head retrained on the int8 layers below
  (`python -m qa.training.top`);
- `cli`: `python -m qa.training`, which strings them together.

    python -m qa.training                      # train, export, quantize, evaluate, write the artifact
    python -m qa.training --resume             # carry on from the last saved training state
    python -m qa.training --evaluate-only      # re-score the shipped artifact on the dev part
    python -m qa.training --from-checkpoint D  # skip training: export/evaluate a saved checkpoint

Every window of a paragraph is a training example: the answer's token span when the window holds
the answer, the [CLS] token ("no answer") when it does not or when the question is unanswerable.
Dev files are only ever used for evaluation and for choosing the no-answer threshold.
"""

from .cli import main
from .data import DEFAULT_DEV, DEFAULT_TRAIN, SOURCES, SquadExample, load_squad, synthetic_unanswerable
from .evaluation import evaluate_gold, evaluate_news, measure_latency
from .export import export_onnx, quantize_mixed, quantize_onnx, quantize_weights_int8, stage_reader, write_model_card
from .loop import layer_depth, train_reader
from .windows import build_features, load_tokenizer

__all__ = [
    "DEFAULT_DEV", "DEFAULT_TRAIN", "SOURCES", "SquadExample", "build_features", "evaluate_gold",
    "evaluate_news", "export_onnx", "layer_depth", "load_squad", "load_tokenizer", "main", "measure_latency",
    "quantize_mixed", "quantize_onnx", "quantize_weights_int8", "stage_reader", "synthetic_unanswerable", "train_reader",
    "write_model_card",
]
