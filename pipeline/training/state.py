"""The resumable state of a training run: what a rerun needs to continue exactly where a killed run stopped.

The state folder (``state_dir``, default ``cache/train_state/``) holds

    current/model.safetensors   every weight of the tagger
    current/average.safetensors the moving average of the weights (only with ``ema_decay``)
    current/training.pt         optimizer, scheduler and grad-scaler state and every process's RNG states: tensors
                                and plain values only, read with ``torch.load(weights_only=True)`` (no pickle)
    current/state.json          format, the resume key, and the progress (epoch, step, loss so far, best score...)
    best/                       the best dev checkpoint so far (a checkpoint folder, see ``checkpoint``)

``current/`` is written as a whole (``atomic_folder``) at the end of every ``save_every_epochs``-th epoch and every
``save_every_steps`` steps, so a kill at any moment leaves the previous state; a kill between the two renames of the
swap leaves it as ``.current.old``, which is read too. ``best/`` lives here, not in the output folder, because DVC
deletes a stage's outputs before it runs it: the output folder is written from ``best/`` when training ends. A state made for
other data, parameters or code is refused, naming each key that differs; ``--restart`` ignores it. A damaged one
(checksums in ``state.json``) is never trusted: training starts over with a note, or refuses with
``--no-restart``. A finished run empties the folder (DVC keeps the folder itself: it is a ``persist`` output).

A run of several processes saves it with ``save_state``: every process's RNG states go to rank 0, which writes the
whole state.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..artifacts.atomic import atomic_folder
from ..artifacts.fingerprint import differences, normalise, sha256_file
from ..core.errors import DghcError

STATE_FORMAT = "dghc-train-state/1"
MODEL_FILE = "model.safetensors"
AVERAGE_FILE = "average.safetensors"
TRAINING_FILE = "training.pt"
META_FILE = "state.json"
BEST_DIR = "best"


@dataclass
class Progress:
    """Where training stands: counters, the current epoch's loss so far, the best dev score and the history."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # optimizer steps done in epoch ``epoch + 1``
    global_step: int = 0
    loss_sum: float = 0.0  # sum of the step losses of the current epoch
    best_score: float = -1.0
    best_epoch: int | None = None
    best_dev: dict | None = None
    stale: int = 0  # scored epochs since the best one
    history: list[dict] = field(default_factory=list)  # one EpochRecord (as a dict) per finished epoch


def capture_rng() -> dict[str, Any]:
    """This process's random states: Python's, NumPy's, torch's and CUDA's, as tensors and plain values."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss], "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
             "numpy": [kind, int(position), int(has_gauss), float(cached)], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, state["numpy_keys"].numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainingState:
    """A loaded state: tensors to put back into the model, optimizer, scheduler, scaler and RNGs."""

    folder: Path
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None
    rng: list[dict[str, Any]]  # one per process, by rank
    progress: Progress
    average: dict[str, torch.Tensor] | None = None  # the weights' moving average (ema_decay), when kept


class StateFolder:
    """The state folder of one training run: ``current/`` (resumable state) and ``best/`` (best checkpoint)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.current = self.root / "current"
        self.best = self.root / "best"
        self._previous = self.root / ".current.old"  # what a kill between the two renames of a swap leaves

    def save(self, *, model: dict[str, torch.Tensor], optimizer: dict[str, Any], scheduler: dict[str, Any],
             scaler: dict[str, Any] | None, rng: list[dict[str, Any]], progress: Progress,
             resume_key: dict[str, Any], average: dict[str, torch.Tensor] | None = None) -> None:
        """Write ``current/`` atomically."""
        from safetensors.torch import save_file

        with atomic_folder(self.current) as staging:
            save_file({k: v.detach().contiguous().cpu() for k, v in model.items()}, str(staging / MODEL_FILE))
            if average is not None:
                save_file({k: v.detach().contiguous().cpu() for k, v in average.items()}, str(staging / AVERAGE_FILE))
            torch.save({"optimizer": optimizer, "scheduler": scheduler, "scaler": scaler, "rng": rng},
                       staging / TRAINING_FILE)
            files = {name: sha256_file(staging / name) for name in (MODEL_FILE, AVERAGE_FILE, TRAINING_FILE)
                     if (staging / name).is_file()}
            meta = {"format": STATE_FORMAT, "resume_key": normalise(resume_key), "progress": asdict(progress),
                    "sha256": files}
            (staging / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def saved(self) -> Path | None:
        """The state to resume from: ``current/``, or the previous one a kill left mid-swap (None: no state)."""
        if (self.current / META_FILE).is_file():
            return self.current
        if (self._previous / META_FILE).is_file() and not self.current.exists():
            return self._previous
        return None

    def load(self, resume_key: dict[str, Any], *, restart_damaged: bool = True, clear: bool = True,
             note: Callable[[str], None] = lambda message: None) -> TrainingState | None:
        """The saved state, or None when there is none.

        A state of another run (its resume key differs) is refused, naming each differing key. A damaged one
        (unreadable, another format, files that do not match their checksums) is never trusted: it is removed
        and training starts over with a note, or, without ``restart_damaged`` (``--no-restart``), refused.
        """
        from safetensors.torch import load_file

        found = self.saved()
        if found is None:
            return None
        fix = f"rerun with --restart to start over (the state in {self.root} is then replaced)"
        try:
            meta = json.loads((found / META_FILE).read_text(encoding="utf-8"))
            if meta.get("format") != STATE_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, not {STATE_FORMAT}")
            changed = differences(meta.get("resume_key", {}), normalise(resume_key))
            if changed:
                said = [line.replace("expected", "saved for").replace("found", "now") for line in changed]
                raise DghcError(f"{found}: the saved training state belongs to another run ({'; '.join(said)}); "
                                f"{fix}")
            for name, digest in meta["sha256"].items():
                if sha256_file(found / name) != digest:
                    raise ValueError(f"{name} does not match its checksum")
            progress = Progress(**meta["progress"])
            training = torch.load(found / TRAINING_FILE, map_location="cpu", weights_only=True)
            model = load_file(str(found / MODEL_FILE))
            average = load_file(str(found / AVERAGE_FILE)) if AVERAGE_FILE in meta["sha256"] else None
        except DghcError:
            raise
        except Exception as err:  # a damaged state of any kind: never trusted
            problem = f"{found}: the training state is damaged ({type(err).__name__}: {str(err)[:200]})"
            if not restart_damaged:
                raise DghcError(f"{problem}, and --no-restart was given; {fix}") from None
            note(f"{problem}; starting over")
            if clear:  # one process of a data-parallel run clears it
                self.clear()
            return None
        return TrainingState(found, model, training["optimizer"], training["scheduler"], training["scaler"],
                             training["rng"], progress, average)

    def clear(self) -> None:
        """Remove the state and the best checkpoint (the folder itself stays)."""
        for path in (self.current, self._previous, self.best):
            shutil.rmtree(path, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)


def save_state(accelerator: Any, folder: StateFolder, *, tagger: torch.nn.Module, optimizer: Any, scheduler: Any,
               average: Any, progress: Progress, resume_key: dict[str, Any]) -> None:
    """Save a run's state: every process's RNG states go to rank 0, which writes the whole state (the model,
    ``average`` when there is one, optimizer, scheduler, the accelerator's grad scaler); every process waits."""
    from accelerate.utils import gather_object

    rng = gather_object([capture_rng()]) if accelerator.num_processes > 1 else [capture_rng()]
    if accelerator.is_main_process:
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        folder.save(model=tagger.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    scaler=scaler, rng=rng, progress=progress, resume_key=resume_key,
                    average=average.state_dict() if average is not None else None)
    accelerator.wait_for_everyone()
