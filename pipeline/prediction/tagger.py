"""``Tagger``: a trained DGHC model from Python, with the Hugging Face Hub's conventions.

    from dghc import Tagger

    tagger = Tagger.from_pretrained("cache/model")     # a folder `dghc train` wrote, or a model id on the Hub
    records = tagger.predict([{"text": "Jordan scored twice", "image": "photo.jpg"}, {"tokens": ["Tokyo"]}])
    metrics = tagger.evaluate("data/test.txt", "cache/features.h5").metrics
    tagger.save_pretrained("exported")                  # the same folder format, with its model card
    tagger.push_to_hub("me/dghc-tagger")                # huggingface_hub's upload of that folder

Built on huggingface_hub's ``ModelHubMixin``, not ``PyTorchModelHubMixin`` nor transformers' ``PreTrainedModel``: a
dghc model is a folder of its own format (model.safetensors + dghc.json + encoder/, and the CLIP model and detector
it records for its visual pipeline), not one module with a config.json; the mixin gives from_pretrained,
save_pretrained and push_to_hub over that format.

``predict`` returns what ``dghc predict`` writes (one dict per post, see ``run``); ``evaluate`` computes what
``dghc evaluate`` prints and writes (the stage calls it).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from huggingface_hub import ModelHubMixin

from ..core.errors import DataFormatError, DghcError, first_line
from ..data.raw_text import TextSplit
from ..inference.checkpoint import META, Checkpoint, load_checkpoint, save_checkpoint
from ..inference.config import EvaluateConfig
from ..inference.model_card import TAGS, render_model_card
from .config import PredictConfig
from .inputs import KNOWN_FIELDS, InputPost, parse_post

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from ..data.conll import Post
    from ..inference.tagging import PostPrediction
    from ..model.config import ModelConfig
    from .post_tagger import PostTagger

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """What ``Tagger.evaluate`` computed: ``dghc evaluate``'s metrics (the --metrics JSON), and the gold posts with
    their predictions (the --predictions file)."""

    metrics: dict[str, Any]
    predictions: list[PostPrediction]
    posts: list[Post]

    def predictions_conll(self) -> str:
        """CoNLL columns token, gold, predicted (evaluate's --predictions file)."""
        from ..inference.evaluation import predictions_conll

        return predictions_conll(self.posts, self.predictions)


class Tagger(ModelHubMixin, library_name="dghc", tags=list(TAGS), pipeline_tag="token-classification"):
    """A trained DGHC model (a checkpoint folder) with its visual pipeline: posts in, entities out.

    Load one with ``Tagger.from_pretrained(folder_or_hub_id)``; the weights go to a device on the first
    ``predict`` and stay there for the next calls with the same settings.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Tagger:
        # The mixin's __new__ keeps the JSON-able __init__ arguments (a dataclass as a deep copy) to write them as a
        # config.json beside the weights; a Tagger's configuration is its folder's dghc.json, so it keeps none.
        return object.__new__(cls)

    def __init__(self, checkpoint: Checkpoint, folder: Path, name: str | None = None) -> None:
        """``checkpoint`` as ``load_checkpoint(folder)`` read it; ``name``: how the model was asked for (a folder
        or a hub id; default: the folder), as evaluate's metrics name it."""
        self._checkpoint = checkpoint
        self._folder = Path(folder)
        self._name = name if name is not None else str(folder)
        self._post_tagger: tuple[tuple, PostTagger] | None = None  # (settings, tagger on its device)

    # ---- loading and saving (huggingface_hub's ModelHubMixin) ----

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, revision: str | None = None, **model_kwargs: Any) -> Tagger:
        """A model folder written by ``dghc train`` (or ``save_pretrained``), or the id of a model repository on
        the Hugging Face Hub (downloaded with ``snapshot_download``; the other arguments are its own).

        The mixin's own from_pretrained first looks for a config.json (warning for a folder without one and
        downloading it for a hub id), which a dghc folder does not have: this goes to ``_from_pretrained`` at once.
        """
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision,
                                    cache_dir=cache_dir, force_download=force_download,
                                    local_files_only=local_files_only, token=token, **model_kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         **model_kwargs: Any) -> Tagger:
        if model_kwargs:
            raise TypeError(f"Tagger.from_pretrained() got unexpected arguments: {', '.join(sorted(model_kwargs))}")
        folder = Path(model_id).expanduser()
        if not folder.exists():
            folder = _download(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                               local_files_only=local_files_only, token=token)
        return cls(load_checkpoint(folder), folder, name=model_id)

    @classmethod
    def from_folder(cls, folder: str | Path) -> Tagger:
        """A model folder only, never the hub: what the command line's MODEL argument names."""
        if not Path(folder).is_dir():
            raise DghcError(f"{folder}: no such model folder; give the folder `dghc train` wrote")
        return cls(load_checkpoint(folder), Path(folder))

    def _save_pretrained(self, save_directory: Path) -> None:
        """The checkpoint folder, written atomically, with its model card (README.md)."""
        save_checkpoint(save_directory, self._checkpoint)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card ``save_checkpoint`` writes (the mixin's generic card would say nothing of the model)."""
        from huggingface_hub import ModelCard

        return ModelCard(render_model_card(self._checkpoint))

    # ---- what the model is ----

    @property
    def folder(self) -> Path:
        """The model folder the weights were read from (a hub id's download folder)."""
        return self._folder

    @property
    def name(self) -> str:
        """The folder or hub id the model was asked for."""
        return self._name

    @property
    def config(self) -> ModelConfig:
        """The model's parameters (labels included), as dghc.json records them."""
        return copy.deepcopy(self._checkpoint.tagger.config)

    @property
    def labels(self) -> list[str]:
        """The model's BIOES labels, in the order of the CRF's tag ids (predict returns BIO entities)."""
        return list(self._checkpoint.tagger.config.labels)

    @property
    def info(self) -> dict[str, Any]:
        """The training summary dghc.json records: encoder, best epoch, dev scores, every train parameter..."""
        return copy.deepcopy(self._checkpoint.info)

    @property
    def checkpoint(self) -> Checkpoint:
        """The loaded checkpoint (the tagger module, its tokenizer, the fingerprints of its vision inputs)."""
        return self._checkpoint

    def __repr__(self) -> str:
        return f"Tagger({self._name!r}, labels={len(self._checkpoint.tagger.config.labels)}, " \
               f"use_image={self._checkpoint.tagger.config.use_image})"

    # ---- using it ----

    def predict(self, posts: Iterable[Mapping[str, Any]], *, batch_size: int = PredictConfig.batch_size,
                device: str = PredictConfig.device, precision: str = PredictConfig.precision,
                detector_weights: str | None = None, grounding_weights: str | None = None,
                clip_model: str | None = None, base_dir: str | Path | None = None) -> list[dict[str, Any]]:
        """Tag ``posts``: dicts like the lines of ``dghc predict``'s input (``{"id"?, "text" or "tokens",
        "image"?}``; a post without an id gets its position, "0", "1", ...). Returns one record per post, in order,
        as ``dghc predict`` writes them: entities with token and character offsets, relevance, gates, the image's
        status and regions.

        Relative image paths start from ``base_dir`` (default: the current folder); raw text is cut into words as
        the model's training data was. Each image runs through the detector and the CLIP model the model records
        (``detector_weights``, ``grounding_weights``, ``clip_model``: where they lie if not found by name). The
        other arguments are ``dghc predict``'s options of the same names. A bad post raises DghcError naming it.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DghcError(f"batch_size must be a positive integer, not {batch_size!r}")
        if isinstance(posts, (str, bytes, Mapping)):
            raise DghcError("Tagger.predict takes a list of posts (dicts such as {\"text\": \"...\"}), not a "
                            f"single {type(posts).__name__}")
        parsed = self._parse(posts, Path(base_dir) if base_dir is not None else Path.cwd())
        if not parsed:
            return []
        tagger = self.post_tagger(device=device, batch_size=batch_size, precision=precision,
                                  detector_weights=detector_weights, grounding_weights=grounding_weights,
                                  clip_model=clip_model, with_images=any(post.image is not None for post in parsed))
        records = []
        for start in range(0, len(parsed), batch_size):
            for item in tagger.tag(parsed[start: start + batch_size], "posts"):
                record = item.record
                if record["image_status"] in ("missing", "unreadable"):
                    logger.warning("predict: the image of post %r is %s (%s); tagged from the text alone",
                                   record["id"], record["image_status"], record["image_reason"])
                records.append(record)
        return records

    def evaluate(self, data_file: str | Path, features_file: str | Path | None = None, *,
                 batch_size: int = EvaluateConfig.batch_size, device: str = EvaluateConfig.device,
                 precision: str = EvaluateConfig.precision, keep_other: bool = EvaluateConfig.keep_other,
                 allow_unseen_types: bool = EvaluateConfig.allow_unseen_types,
                 progress: bool = False) -> EvaluationResult:
        """Score the model on the CoNLL file ``data_file`` as ``dghc evaluate`` does: entity-level P/R/F1 in
        seqeval's default and strict modes (overall and per type), mean relevance and gates, in ``metrics``.
        ``features_file``: the vectors ``dghc extract`` cached for the data (needed by a model that uses the image).
        """
        from ..core.devices import tagging_device
        from ..data.conll import read_conll, require_posts
        from ..data.entity_types import refuse_unseen_types
        from ..data.tags import invalid_bio_positions
        from ..inference import evaluation
        from ..inference.visual_features import open_for_model

        checkpoint = self._checkpoint
        resolved = tagging_device("evaluate", device, precision)
        # Gold as written (stray I- kept): default mode reads it as conlleval does, strict mode as IOB2.
        posts, _ = read_conll(data_file, type_map=evaluation.gold_type_map(checkpoint, keep_other), invalid_bio="keep")
        require_posts(posts, data_file, "evaluate")
        if not allow_unseen_types:
            refuse_unseen_types(posts, evaluation.model_types(checkpoint), data_file, "--allow-unseen-types")
        features = open_for_model(checkpoint, features_file)
        result = evaluation.evaluate(checkpoint, posts, features, batch_size, resolved, progress=progress,
                                     precision=precision)
        invalid = sum(len(invalid_bio_positions(p.labels)) for p in posts)
        metrics = {**result.metrics, "data": str(data_file), "model": self._name, "gold_invalid_bio": invalid}
        return EvaluationResult(metrics, result.predictions, posts)

    def _parse(self, posts: Iterable[Mapping[str, Any]], base_dir: Path) -> list[InputPost]:
        split = TextSplit.from_json(self._checkpoint.info.get("text_split"), f"{self._folder / META}")
        parsed: list[InputPost] = []
        seen: dict[str, int] = {}
        unknown: set[str] = set()
        for index, value in enumerate(posts):
            if isinstance(value, Mapping):
                unknown.update(str(key) for key in value if key not in KNOWN_FIELDS)
                if "id" not in value:
                    value = {**value, "id": str(index)}
                value = dict(value)
            try:
                post = parse_post(value, source="posts", line=index, base_dir=base_dir, split=split)
            except DataFormatError as err:
                raise DghcError(f"posts[{index}]: {err.problem}" + (f" ({err.fix})" if err.fix else "")) from None
            if post.post_id in seen:
                raise DghcError(f"posts[{index}]: id {post.post_id!r} is already the id of posts[{seen[post.post_id]}] "
                                "(give every post its own id)")
            seen[post.post_id] = index
            parsed.append(post)
        if unknown:
            logger.warning("predict: ignoring unknown field(s) %s (known: %s)", ", ".join(sorted(unknown)),
                           ", ".join(KNOWN_FIELDS))
        return parsed

    def post_tagger(self, *, device: str, batch_size: int, precision: str, detector_weights: str | None,
                    grounding_weights: str | None, clip_model: str | None, with_images: bool,
                    log: Callable[[str], None] | None = None) -> PostTagger:
        """The model on ``device`` with its visual pipeline, as ``predict`` and ``dghc predict`` tag with it: the
        one of the last call when the settings are the same (and it has the visual pipeline these posts need), else
        a new one (the model moves to its device once). ``log``: where notes go (default: this module's logger)."""
        from ..core.devices import tagging_device
        from .post_tagger import PostTagger

        settings = (device, batch_size, precision, detector_weights, grounding_weights, clip_model)
        cached = self._post_tagger
        needs_vision = with_images and self._checkpoint.tagger.config.use_image
        if cached is not None and cached[0] == settings and not (needs_vision and cached[1].pipeline is None):
            return cached[1]
        self._post_tagger = None  # a failure below leaves no half-made tagger behind
        tagger = PostTagger(self._checkpoint, tagging_device("predict", device, precision), model_dir=self._folder,
                            with_images=with_images, log=log if log is not None else logger.warning,
                            batch_size=batch_size, precision=precision, detector_weights=detector_weights,
                            grounding_weights=grounding_weights, clip_model=clip_model)
        self._post_tagger = (settings, tagger)
        return tagger


def _download(model_id: str, **options: Any) -> Path:
    """The folder of hub model ``model_id`` (huggingface_hub's cache); a one-line DghcError when it cannot be had."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(repo_id=model_id, repo_type="model", **options))
    except Exception as err:  # offline, unreachable, no such repository, not a repository name: one line for all
        if isinstance(err, HFValidationError):
            why = "not a hub model id either, which reads 'name' or 'owner/name'"
        elif constants.HF_HUB_OFFLINE or options.get("local_files_only"):
            why = "offline: HF_HUB_OFFLINE is set or local_files_only, and the hub cache does not hold it"
        else:
            why = f"{type(err).__name__}: {first_line(err)[:200]}"
        raise DghcError(f"{model_id} is neither a model folder here nor reachable on the Hugging Face Hub "
                        f"({why})") from None
