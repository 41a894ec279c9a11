"""Recipes, stage selection and the per-clip driver behind `hoi preprocess`.

A recipe (``hoi_cli/recipes/NAME.toml``, or a folder given by ``HOI_PIPELINES_DIR``) names the stages a system's conditioning needs and their
parameters::

    name = "rehold"
    description = "..."
    stages = ["00_frames", "01_detect", "02_hands", "06_layout"]
    [params."01_detect"]
    square_size = 128

Stages a recipe needs but does not list (its dependencies) are added. Command-line
overrides (``--set STAGE.PARAM=VALUE`` and the named flags) win over the recipe.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from .errors import BadInputError, HoiError, NoHandsError
from .stages.base import params_from_dict, stage_dependencies
from .stages.registry import STAGES, available_stages, get_stage, stage_name  # noqa: F401  (re-exported)

DEFAULT_PIPELINE = "full"
GENERIC_STEMS = {"video", "clip", "input", "source", "raw", "rgb", "movie", "frames", "images", "img"}


def pipelines_dir() -> Path:
    from .resources import recipes_dir

    return recipes_dir()


@dataclass
class Recipe:
    name: str
    stages: list[str]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    path: Path | None = None


def list_recipes() -> list[str]:
    return sorted(p.stem for p in pipelines_dir().glob("*.toml"))


def load_recipe(name_or_path: str) -> Recipe:
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.exists()):
        path = pipelines_dir() / f"{name_or_path}.toml"
    if not path.exists():
        raise BadInputError(f"unknown pipeline {name_or_path!r}",
                            f"known: {', '.join(list_recipes()) or 'none'}; or pass a .toml path")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"pipeline file {path} is not valid TOML: {exc}", "fix the file") from None
    stages = [stage_name(s) for s in data.get("stages", [])]
    params = {stage_name(k): dict(v) for k, v in data.get("params", {}).items()}
    stages = [s for s in STAGES if s in set(stages)]  # pipeline order; dependencies are added on selection
    return Recipe(data.get("name", path.stem), stages, params,
                  data.get("description", ""), path)


def with_dependencies(stages: list[str], params_of: Callable[[str], Any] | None = None) -> list[str]:
    """The stages plus everything they depend on with their parameters (``params_of(stage)``,
    default: the stage's defaults; `stage_dependencies`), in pipeline order."""
    needed = set(stages)
    changed = True
    while changed:
        changed = False
        for s in list(needed):
            params = params_of(s) if params_of is not None else None
            for dep in stage_dependencies(get_stage(s), params):
                if dep not in needed:
                    needed.add(dep)
                    changed = True
    return [s for s in STAGES if s in needed]


def select_stages(recipe_stages: list[str], *, from_stage: str | None = None, until: str | None = None,
                  params_of: Callable[[str], Any] | None = None) -> tuple[list[str], set[str]]:
    """Stages to consider (up to ``until``) and those forced by ``from_stage``; dependencies are
    judged with ``params_of(stage)`` (see `with_dependencies`)."""
    order = [s for s in STAGES if s in set(recipe_stages)]
    if until:
        u = stage_name(until)
        order = [s for s in order if list(STAGES).index(s) <= list(STAGES).index(u)]
        if u not in order:
            order.append(u)
    order = with_dependencies(order, params_of)
    forced: set[str] = set()
    if from_stage:
        f = stage_name(from_stage)
        if f not in order:
            raise BadInputError(f"--from {f} is not in the selected stages", f"stages: {', '.join(order)}")
        forced = set(order[order.index(f):])
    return order, forced


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """``["01_detect.square_size=128", ...]`` -> ``{"01_detect": {"square_size": "128"}}``; nested
    parameters take a dotted key (``segment.grabcut.iterations=3``). Every value is checked here, so a
    typo (an unknown key, a choice not offered) stops the command before any clip runs."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        m = re.fullmatch(r"(\w+)\.(\w+(?:\.\w+)*)=(.*)", item.strip())
        if not m:
            raise BadInputError(f"bad --set {item!r}", "use --set STAGE.PARAM=VALUE, e.g. --set detect.square_size=128")
        out.setdefault(stage_name(m.group(1)), {})[m.group(2)] = m.group(3)
    for stage, values in out.items():
        params_from_dict(get_stage(stage).Params, values)
    return out


def resolve_params(stage: str, recipe: Recipe, overrides: dict[str, dict[str, Any]]) -> Any:
    values = dict(recipe.params.get(stage, {}))
    values.update(overrides.get(stage, {}))
    return params_from_dict(get_stage(stage).Params, values)


# ---------------------------------------------------------------- clips, ids, shards
def run_ids(clips: list[Path]) -> list[str]:
    """A run id per clip: its file stem, or parent_stem where the stem is generic or collides."""
    stems = [c.stem for c in clips]
    ids = []
    for clip, stem in zip(clips, stems):
        if stem.lower() in GENERIC_STEMS or stems.count(stem) > 1:
            ids.append(f"{clip.parent.name}_{stem}" if clip.parent.name else stem)
        else:
            ids.append(stem)
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise BadInputError(f"clips map to the same run id: {', '.join(sorted(dupes))}",
                            "rename the clips or process them in separate --out folders")
    return ids


def shard_from_env() -> tuple[int, int]:
    """(index, count) from SLURM array or torchrun variables; (0, 1) when neither is set."""
    env = os.environ
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        lo = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        return int(env["SLURM_ARRAY_TASK_ID"]) - lo, int(env["SLURM_ARRAY_TASK_COUNT"])
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    return 0, 1


def shard(items: list, index: int, count: int) -> list:
    if count < 1 or not 0 <= index < count:
        raise BadInputError(f"shard index {index} out of range for {count} shards",
                            "use 0 <= --shard-index < --num-shards")
    return items[index::count]


def expand_clips(inputs: list[str]) -> list[Path]:
    """Clips (videos, GIFs, frame folders) from paths, sorted and unique: see `hoi_cli.clips`."""
    from .clips import expand_clips as _expand

    return _expand(inputs)


# ---------------------------------------------------------------- driver
@dataclass
class StageOutcome:
    stage: str
    action: str  # "ran" | "cached"
    seconds: float = 0.0
    reason: str = ""
    summary: dict = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return list(self.summary.get("warnings", []))


def preprocess_clip(clip: Path, run_dir: Path, recipe: Recipe, *, overrides: dict | None = None,
                    force: set[str] | None = None, from_stage: str | None = None, until: str | None = None,
                    weights_dir: str | None = None, device: str = "cpu", strict: bool = False,
                    on_stage_start: Callable[[str, str], None] | None = None,
                    progress: Callable[[int, int | None], None] | None = None,
                    log: Callable[[str], None] | None = None) -> list[StageOutcome]:
    """Bring one clip's run folder up to date for ``recipe``; returns what each stage did.

    A stage's warnings (e.g. no hand found) are in its outcome's summary, cached ones too;
    ``strict`` turns the first into `NoHandsError` after that stage (its outputs are kept)."""
    from .store import RunStore

    overrides = overrides or {}
    order, forced = select_stages(recipe.stages, from_stage=from_stage, until=until,
                                  params_of=lambda name: resolve_params(name, recipe, overrides))
    forced |= {stage_name(s) for s in (force or set())}
    if not clip.exists():
        raise BadInputError(f"clip not found: {clip}", "check the path")
    from .clips import clip_kind

    frame_overrides = overrides.get("00_frames", {})
    if frame_overrides.get("fps") and clip_kind(clip) != "frames":  # --fps is a frame folder's rate; a video keeps its own
        overrides = {**overrides, "00_frames": {k: v for k, v in frame_overrides.items() if k != "fps"}}
    outcomes: list[StageOutcome] = []
    with RunStore(run_dir) as store:
        states = {}
        for name in order:
            stage = get_stage(name)
            params = resolve_params(name, recipe, overrides)
            source = clip if name == "00_frames" else None
            state = store.state(stage, params, source=source, weights_dir=weights_dir, upstream_states=states)
            if state.status == "ok" and name not in forced:
                states[name] = state
                outcomes.append(StageOutcome(name, "cached", summary=(store.manifest(name) or {}).get("summary", {})))
                _check_strict(outcomes[-1], strict)
                continue
            reason = "forced" if name in forced else (state.reason or state.status)
            if on_stage_start:
                on_stage_start(name, reason)
            manifest = store.run_stage(stage, params, source=source, weights_dir=weights_dir, device=device,
                                       progress=progress, log=log)
            states[name] = store.state(stage, params, source=source, weights_dir=weights_dir,
                                       upstream_states=states)
            outcomes.append(StageOutcome(name, "ran", manifest["timing"]["seconds"], reason, manifest["summary"]))
            _check_strict(outcomes[-1], strict)
    return outcomes


def _check_strict(outcome: StageOutcome, strict: bool) -> None:
    if strict and outcome.warnings:
        raise NoHandsError(f"{outcome.stage}: {outcome.warnings[0]} (--strict)",
                           "drop --strict to go on with hand outputs marked invalid, or prompt the hands "
                           "with --hand-box x0,y0,x1,y1@FRAME")


def run_status(run_dir: Path, recipe: Recipe | None = None, *, verify: bool = False,
               weights_dir: str | None = None) -> dict[str, dict]:
    """Per-stage state of a run, judged with each stage's recorded parameters, or the recipe's
    (then for the stages `hoi preprocess` would run: the recipe's and their dependencies)."""
    from .stages.base import params_from_dict
    from .store import RunStore

    store = RunStore(run_dir)
    states: dict = {}
    out: dict[str, dict] = {}
    if recipe:
        names = with_dependencies(recipe.stages, lambda name: resolve_params(name, recipe, {}))
    else:
        names = [s for s in STAGES if (run_dir / s).exists() or store.failure(s) is not None]
    for name in names:
        try:
            stage = get_stage(name)
        except HoiError as exc:
            out[name] = {"status": "missing", "reason": exc.message}
            continue
        manifest = store.manifest(name)
        if recipe is not None:
            params = resolve_params(name, recipe, {})
        elif manifest is not None:
            try:
                params = params_from_dict(stage.Params, manifest.get("params", {}))
            except BadInputError as exc:
                out[name] = {"status": "stale", "reason": exc.message}
                continue
        else:
            params = stage.Params()
        state = store.state(stage, params, weights_dir=weights_dir, upstream_states=states)
        if verify and state.status == "ok":
            bad = store.verify(name)
            if bad:
                state.status, state.reason = "stale", "outputs changed on disk: " + ", ".join(bad[:3])
        states[name] = state
        out[name] = state.to_json()
        if manifest is not None and manifest.get("summary", {}).get("warnings"):
            out[name]["warnings"] = list(manifest["summary"]["warnings"])
    return out
