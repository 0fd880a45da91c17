"""The package layout's promises, checked on the imports themselves (function-level ones too)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.environment import REPO
from tests.imports import project_closure

# Using a trained model must not run training code (predict, evaluate and report load no optimizer, no trainer).
INFERENCE_SIDE = ["dghc.pipeline.inference.evaluation", "dghc.pipeline.inference.tagging", "dghc.pipeline.prediction.run",
                  "dghc.pipeline.report.build", "dghc.stages.evaluate", "dghc.stages.predict"]


@pytest.mark.parametrize("module", INFERENCE_SIDE)
def test_inference_never_imports_training(module):
    training = sorted(str(p.relative_to(REPO)) for p in project_closure(module) if "training" in p.parts)
    assert not training, f"{module} runs {training}"


def test_the_resume_key_hashes_the_code_training_runs_and_only_that():
    """A saved training state is tied to the code the trainer imports (sub-word alignment included), not to
    evaluate's or predict's code, whose edits must not make a long run start over."""
    from dghc.pipeline.artifacts.fingerprint import import_closure

    files = {str(p.relative_to(REPO)) for p in import_closure("dghc.pipeline.training.trainer", REPO, ("dghc.pipeline",))}
    assert {"pipeline/data/alignment.py", "pipeline/model/tagger.py", "pipeline/inference/tagging.py"} <= files
    assert not files & {"pipeline/inference/evaluation.py", "pipeline/prediction/run.py", "pipeline/report/build.py"}


def test_only_the_scale_package_imports_ray():
    """Ray is an optional extra: the local engine, and every reader of a sharded store, work without it."""
    import ast

    importers = set()
    for path in package_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == "ray" or name.startswith("ray.") for name in names):
                importers.add(path.relative_to(REPO).parts[:2])
    assert importers == {("pipeline", "scale")}, importers


PROJECT_FOLDERS = ("pipeline", "stages")
BARE_NAMES = ("pipeline", "stages", "cli")  # what the package's folders would be called without the dghc namespace


ROOT_MODULES = ("__init__.py", "__main__.py", "cli.py")  # the package's own modules at the repository root


def package_sources() -> list:
    """The files of the package dghc: pipeline/, stages/ and the root's modules."""
    return [*(REPO / "pipeline").rglob("*.py"), *(REPO / "stages").rglob("*.py"), *(REPO / m for m in ROOT_MODULES)]


def test_project_code_is_imported_as_dghc_only():
    """The package imports its own modules relatively (``from ..core.errors import DghcError``), so they resolve by
    their files whatever the package is called, for Python and for tools that read imports by path (IDEs, structure
    drawings); tests and benchmarks import ``dghc.…``. ``import pipeline…`` would load a second copy of a module
    beside dghc.pipeline… (pytest puts the repository on sys.path), so a monkeypatch, a logger name or an isinstance
    check would silently miss the code that runs."""
    import ast
    import re

    # "pipeline.data.conll", "stages.x:cmd" (monkeypatch targets, logger names, entry points), not "cli.py"
    module_path = re.compile(rf"^(?!.*\.py$)({'|'.join(BARE_NAMES)})(\.\w+)+(:\w+)?$")
    # code in a string, run by a subprocess: "import sys; from cli import dghc"
    statement = re.compile(rf"(?:^|[;\n])\s*(?:from|import)\s+(({'|'.join(BARE_NAMES)})(\.\w+)*)[\s;]", re.M)
    inside = set(package_sources())
    found = []
    for path in [*inside, *(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else \
                [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                module_path.match(node.value) else \
                [m.group(1) for m in statement.finditer(node.value)] if isinstance(node, ast.Constant) and \
                isinstance(node.value, str) else []
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            found += [f"{where}: {name} (use dghc.{name})" for name in names
                      if name.split(".")[0].split(":")[0] in BARE_NAMES]
            found += [f"{where}: {name} (inside the package, import it relatively)" for name in names
                      if path in inside and not isinstance(node, ast.Constant) and name.split(".")[0] == "dghc"]
    assert not found, "\n".join(found)


def test_pyproject_lists_every_package_folder():
    """setuptools installs only the packages pyproject.toml lists: a new folder left out would be missing from a
    wheel while every test, run from the repository, still passes."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    # packages, and the folders of package data (templates), which setuptools warns about unless listed
    folders = {"dghc." + ".".join(folder.relative_to(REPO).parts) for top in PROJECT_FOLDERS
               for folder in [*(init.parent for init in (REPO / top).rglob("__init__.py")), *(REPO / top).rglob("templates/")]}
    assert setuptools["package-dir"] == {"dghc": "."}
    assert set(setuptools["packages"]) == folders | {"dghc"}


def test_the_wheel_installs_one_package_dghc(tmp_path):
    """The built wheel holds dghc/ only (no top-level cli, pipeline or stages module in site-packages), with every
    module, the report templates and the entry point `dghc = dghc.cli:main`."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"  # a copy: building in place would leave build/ in the working tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *ROOT_MODULES):
        shutil.copy2(REPO / name, source / name)
    for top in PROJECT_FOLDERS:
        shutil.copytree(REPO / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("dghc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    print(f"{wheel.name}: {len(names)} files")
    assert {name.split("/")[0] for name in names} == {"dghc", wheel.name.split("-py")[0] + ".dist-info"}
    files = [*(REPO / m for m in ROOT_MODULES), *(path for top in PROJECT_FOLDERS for path in (REPO / top).rglob("*")
                                if path.is_file() and "__pycache__" not in path.parts)]
    expected = {"dghc/" + str(path.relative_to(REPO)) for path in files}
    assert not expected - set(names), sorted(expected - set(names))
    entry_points = zipfile.ZipFile(wheel).read(wheel.name.split("-py")[0] + ".dist-info/entry_points.txt").decode()
    assert "dghc = dghc.cli:main" in entry_points


def test_the_installed_package_holds_dghc_s_modules_only():
    """`make install` links dghc's own files (an editable install in setuptools' strict mode): the repository root is
    the package, but its tests/ and benchmarks/ are not dghc.tests or dghc.benchmarks, while every module is there,
    and `python -m dghc` and `dghc.__version__` work."""
    import importlib.util
    import subprocess
    import sys

    import dghc

    assert importlib.util.find_spec("dghc.tests") is None and importlib.util.find_spec("dghc.benchmarks") is None
    assert importlib.util.find_spec("dghc.pipeline.api.detect") is not None
    assert importlib.util.find_spec("dghc.stages.param_tables") is not None
    shown = subprocess.run([sys.executable, "-m", "dghc", "--version"], capture_output=True, text=True, cwd="/")
    assert shown.returncode == 0 and shown.stdout.strip() == f"dghc, version {dghc.__version__}", shown


def lint_imports(package_root, tmp_path):
    """lint-imports on the package at ``package_root`` (a folder holding ``dghc/``), with pyproject.toml's contract."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(package_root)}  # before the editable install's finder
    return subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--config", str(REPO / "pyproject.toml"),
                           "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)


def test_the_import_stack_is_kept_and_a_layer_importing_upwards_breaks_it(tmp_path):
    """pyproject.toml's import-linter contract (make lint): core at the bottom, then artifacts, data, the models and
    detection, features, inference, the stages' library code, scale (the Ray engine), api (the engine's choice),
    stages and cli. It holds for the package, and it sees an import that runs back up the stack."""
    import shutil

    kept = lint_imports(_package_copy(tmp_path / "kept"), tmp_path)
    print(kept.stdout[-1500:])
    assert kept.returncode == 0 and "1 kept, 0 broken" in kept.stdout, kept.stdout[-3000:] + kept.stderr[-2000:]
    root = _package_copy(tmp_path / "planted")
    with open(root / "dghc" / "pipeline" / "data" / "stats.py", "a", encoding="utf-8") as handle:
        handle.write("\nfrom ..api.train import train as _upwards  # noqa: E402,F401\n")
    broken = lint_imports(root, tmp_path)
    assert broken.returncode != 0 and "dghc.pipeline.data.stats -> dghc.pipeline.api.train" in broken.stdout, \
        broken.stdout[-3000:]
    shutil.rmtree(root)


def _package_copy(root):
    """The package's sources under ``root/dghc/``, as an installed copy would hold them."""
    import shutil

    package = root / "dghc"
    package.mkdir(parents=True)
    for name in ROOT_MODULES:
        shutil.copy2(REPO / name, package / name)
    for top in PROJECT_FOLDERS:
        shutil.copytree(REPO / top, package / top, ignore=shutil.ignore_patterns("__pycache__"))
    return root


# Parameter names whose library default differs from the stage's on purpose.
OWN_DEFAULTS = {
    "progress": "a library call is quiet unless asked; the stages show a bar by default",
    "restart": "PartialOutput.resume_point's switch (the stages pass `not no_restart`), not train's --restart",
}


def stage_defaults() -> dict[str, str]:
    """Every stage parameter with a default: name -> the config class that declares it."""
    import dataclasses
    import importlib

    declared = {}
    for path in sorted((REPO / "pipeline").glob("*/config.py")):
        module = importlib.import_module("dghc." + ".".join(path.relative_to(REPO).with_suffix("").parts))
        for value in vars(module).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and hasattr(value, "SECTION"):
                declared.update({f.name: value.__name__ for f in dataclasses.fields(value)
                                 if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING})
    return declared


def test_library_defaults_come_from_the_stage_declarations():
    """Defaults in one place: a library function or settings class with a parameter of a stage's name takes the
    stage's default from its declaration (``batch_size: int = EvaluateConfig.batch_size``), never a literal of its
    own that would drift from it (predict's device was "cpu" while every stage said auto). Config modules are
    where defaults are declared (model/config.py holds the model's, which TrainConfig reads)."""
    import ast

    declared = stage_defaults()
    assert {"batch_size", "device", "prompt_len", "conf", "samples"} <= set(declared)  # the scan sees the configs
    found = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        if path.name == "config.py" or path == REPO / "pipeline" / "core" / "params.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            pairs = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = node.args.posonlyargs + node.args.args
                pairs += zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults)
                pairs += [(arg, default) for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults) if default]
                pairs = [(arg.arg, default) for arg, default in pairs]
            elif isinstance(node, ast.ClassDef):
                pairs = [(field.target.id, field.value) for field in node.body if isinstance(field, ast.AnnAssign)
                         and isinstance(field.target, ast.Name) and field.value is not None]
            for name, default in pairs:
                if name in declared and name not in OWN_DEFAULTS and isinstance(default, ast.Constant) \
                        and default.value is not None:
                    found.append(f"{path.relative_to(REPO)}:{default.lineno}: {name}={default.value!r} "
                                 f"(declared by {declared[name]})")
    assert not found, "take the default from the declaration:\n" + "\n".join(found)
