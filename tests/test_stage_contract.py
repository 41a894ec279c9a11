"""The stage contract: a stage reads only the stages it declares (with its parameters), through
its context and the owning stage's loader, and goes stale when any of them reruns."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from hoi_cli import pipeline as pl
from hoi_cli.testing import make_synthetic_run
from hoi_cli.stages import detect, frames, genhoi, hands, layout, mlo, segment, silhouette
from hoi_cli.stages.base import RunReader, StageContext, UndeclaredInputError, stage_dependencies
from hoi_cli.store import RunStore

T, H, W = 4, 64, 96


@pytest.fixture
def run(tmp_path) -> Path:
    """00_frames..03_segment in the real formats, with manifests (`hoi_cli.testing`)."""
    run = tmp_path / "run"
    make_synthetic_run(run, n_frames=T, width=W, height=H, object_radius_px=12.0, square_box_px=128)
    return run


# ---------------------------------------------------------------- the door
def test_reading_an_undeclared_stage_is_refused(run, tmp_path):
    ctx = StageContext(run, tmp_path, layout.Params(object_box_from="detect"))  # the stage is the module of its Params
    assert ctx.stage is layout and ctx.depends_on == ("00_frames", "01_detect")
    assert ctx.read(detect)["object_boxes"].shape == (T, 4)  # the owning loader's arrays
    for attempt in (lambda: ctx.read(segment), lambda: ctx.path(segment, "masks.npz"),
                    lambda: ctx.input_dir("03_segment"), lambda: ctx.read("03_segment")):
        with pytest.raises(UndeclaredInputError, match=r"06_layout reads 03_segment but declares only "
                                                       r"\(00_frames, 01_detect\)"):
            attempt()
    masked = StageContext(run, tmp_path, layout.Params(object_box_from="mask"))
    assert masked.read(segment)["object"].shape == (T, H, W)
    assert masked.path(segment, "masks.npz") == run / "03_segment" / "masks.npz"


def test_a_declared_stage_that_has_not_run_is_a_bad_input_not_a_crash(run, tmp_path):
    from hoi_cli.errors import BadInputError

    ctx = StageContext(run, tmp_path, genhoi.Params())
    (run / "03_segment" / "manifest.json").unlink()
    with pytest.raises(BadInputError, match="stage 03_segment has not been run"):
        ctx.read(segment)
    assert ctx.read(segment, optional=True) is None


def test_every_stage_module_has_one_loader_that_the_reader_calls(run):
    reader = RunReader(run)
    for name in pl.STAGES:
        assert callable(pl.get_stage(name).load), name
    assert reader.read(frames).meta["n_frames"] == T and reader.read(frames).load([1]).shape == (1, H, W, 3)
    assert reader.read(hands)["slot_faces"].shape[0] == 2  # filled in for runs made before it existed
    assert reader.read(layout, optional=True) is None and not reader.has(layout)
    from hoi_cli.metrics.objects import load_masks  # `hoi eval` on a run folder: the same loader

    masks = reader.read(segment)
    assert masks["object"].any() and (load_masks(run) == masks["object"]).all()
    assert (load_masks(run, key="hand") == masks["hand"]).all()


# ---------------------------------------------------------------- reads, audited
class _OpenedPaths:
    """Run-folder stage names of the files and folders opened while ``active`` (a process-wide
    audit hook: it sees raw ``open``/``np.load``/``glob`` reads that bypass the context too)."""

    hook_installed = False
    current: _OpenedPaths | None = None

    def __init__(self, run_dir: Path):
        self.run_dir = str(run_dir.resolve())
        self.stages: set[str] = set()
        if not _OpenedPaths.hook_installed:
            sys.addaudithook(_OpenedPaths._hook)
            _OpenedPaths.hook_installed = True

    @staticmethod
    def _hook(event: str, args: tuple) -> None:
        me = _OpenedPaths.current
        if me is None or event not in ("open", "os.listdir", "os.scandir") or not args:
            return
        path = args[0]
        if isinstance(path, int) or path is None:
            return
        path = str(Path(path).resolve()) if not str(path).startswith("/") else str(path)
        if path.startswith(me.run_dir + "/"):
            top = path[len(me.run_dir) + 1:].split("/")[0]
            if top in pl.STAGES:
                me.stages.add(top)


def _audited(stage: types.ModuleType, seen: dict[str, set[str]], run_dir: Path) -> types.SimpleNamespace:
    """``stage`` with its ``run`` wrapped to record the stage folders it opens."""
    def run(ctx):
        rec = _OpenedPaths(run_dir)
        _OpenedPaths.current = rec
        try:
            return stage.run(ctx)
        finally:
            _OpenedPaths.current = None
            seen[stage.NAME] = rec.stages

    attrs = {k: getattr(stage, k) for k in ("NAME", "VERSION", "DEPENDS_ON", "Params", "depends_on", "model_files")
             if hasattr(stage, k)}
    return types.SimpleNamespace(**attrs, run=run)


def test_every_stage_reads_only_what_it_declares(run):
    """Each real stage, run by the store on a tiny run, opens no stage folder it does not declare
    (with its parameters); 06_layout in both object modes."""
    steps = [(detect, detect.Params(preview=False, object_auto=False, redetect=False)),
             (hands, hands.Params(iters=5, preview=False)),
             (segment, segment.Params(preview=False)),
             (mlo, mlo.Params(workers=1)),
             (silhouette, silhouette.Params(write_video=False)),
             (layout, layout.Params(write_video=False)),
             (layout, layout.Params(object_box_from="mask", write_video=False)),
             (genhoi, genhoi.Params())]
    seen: dict[str, set[str]] = {}
    with RunStore(run) as store:
        for stage, params in steps:
            store.run_stage(_audited(stage, seen, run), params)
            declared = set(stage_dependencies(stage, params))
            assert seen[stage.NAME] - {stage.NAME}, f"{stage.NAME} read no upstream stage"
            assert seen[stage.NAME] <= declared, (f"{stage.NAME} read {sorted(seen[stage.NAME] - declared)} "
                                                  f"without declaring it (declares {sorted(declared)})")
    assert "03_segment" in seen["06_layout"]  # the last 06_layout run was the mask mode


def test_the_audit_catches_a_raw_read_of_an_undeclared_stage(run):
    """The check above can fail: a stage that opens 03_segment's file itself is caught."""
    def sneaky_run(ctx):
        with np.load(ctx.run_dir / "03_segment" / "masks.npz") as z:
            (ctx.out_dir / "n.txt").write_text(str(len(z.files)))
        return {}

    sneaky = types.SimpleNamespace(NAME="06_layout", VERSION="x", DEPENDS_ON=("00_frames", "01_detect"),
                                   Params=layout.Params, run=sneaky_run)
    seen: dict[str, set[str]] = {}
    with RunStore(run) as store:
        store.run_stage(_audited(sneaky, seen, run), layout.Params())
    assert seen["06_layout"] == {"03_segment"}


# ---------------------------------------------------------------- dependencies that follow the params
def test_layout_mask_mode_selects_and_fingerprints_03_segment():
    assert stage_dependencies(layout, layout.Params(object_box_from="detect")) == ("00_frames", "01_detect")
    assert stage_dependencies(layout, layout.Params()) == ("00_frames", "01_detect", "03_segment")  # the default
    recipe = pl.load_recipe("rehold")  # 00_frames, 01_detect, 02_hands, 06_layout
    plain, _ = pl.select_stages(recipe.stages, params_of=lambda s: pl.resolve_params(s, recipe, {}))
    assert "03_segment" not in plain
    sets = {"06_layout": {"object_box_from": "mask"}}
    masked, _ = pl.select_stages(recipe.stages, params_of=lambda s: pl.resolve_params(s, recipe, sets))
    assert masked == ["00_frames", "01_detect", "02_hands", "03_segment", "06_layout"]


def test_layout_from_masks_goes_stale_when_03_segment_reruns(run):
    """The stale-cache bug of issue 15: 06_layout with object_box_from = "mask" stayed "ok" after
    03_segment reran. Now its fingerprint covers 03_segment, for the store and `hoi status`."""
    p = layout.Params(object_box_from="mask", write_video=False)
    with RunStore(run) as store:
        made = store.run_stage(layout, p)
        assert set(made["inputs"]["upstream"]) == {"00_frames", "01_detect", "03_segment"}
        assert store.state(layout, p).status == "ok"
        before = store.manifest("03_segment")["output_digest"]
        store.run_stage(segment, segment.Params(preview=False))  # GrabCut replaces the synthetic masks
        assert store.manifest("03_segment")["output_digest"] != before
        state = store.state(layout, p)
        assert state.status == "stale" and "upstream 03_segment changed" in state.reason
        # the detect mode does not read the masks: a 03_segment rerun leaves it alone
        plain = layout.Params(object_box_from="detect", write_video=False)
        store.run_stage(layout, plain)
        store.run_stage(segment, segment.Params(preview=True))
        assert store.state(layout, plain).status == "ok"
        store.run_stage(layout, p)
    status = pl.run_status(run)  # `hoi status`: each stage judged with its recorded parameters
    assert status["06_layout"]["status"] == "ok"
    with RunStore(run) as store:
        store.run_stage(segment, segment.Params(preview=False))
    status = pl.run_status(run)
    assert status["06_layout"] == {"status": "stale", "reason": "upstream 03_segment changed"}
    # `hoi status --pipeline`: a recipe whose 06_layout takes the masks lists 03_segment too
    recipe = pl.load_recipe("rehold")
    recipe.params["06_layout"] = {"object_box_from": "mask", "write_video": False}
    status = pl.run_status(run, recipe)
    assert list(status) == ["00_frames", "01_detect", "02_hands", "03_segment", "06_layout"]
    assert status["06_layout"]["status"] == "stale" and "upstream 03_segment" in status["06_layout"]["reason"]


# ---------------------------------------------------------------- 01_detect's prompt record
def test_03_segment_takes_the_object_prompt_from_01_detect_record_for_every_backend(run):
    """One record (01_detect's ``prompts_working``, on the detections its loader returns) tells
    03_segment's mask propagation and its SAM 2 prompt where the user's object prompt is."""
    from hoi_cli.stages.detect import Detections

    arrays = {"object_boxes": np.tile(np.array([10, 10, 40, 30], np.float32), (T, 1)),
              "object_score": np.full(T, 0.8, np.float32)}
    arrays["object_score"][2] = 1.0
    prompted = Detections(arrays, {"object": {"box": [11, 12, 39, 29], "point": None, "frame": 1}})
    assert segment.prompt_frame(prompted) == 1  # the record, not the score
    assert segment._sam2_prompt(prompted) == {"object_box": [11, 12, 39, 29], "object_point": None,
                                              "object_frame": 1}
    automatic = Detections(arrays, {})
    assert segment.prompt_frame(automatic) is None and segment._sam2_prompt(automatic) == {}
    assert segment.prompt_frame(dict(arrays)) == 2  # hand-made arrays without a record: by the score
    # through the loader: the record of the run's 01_detect manifest
    with RunStore(run) as store:
        store.run_stage(detect, detect.Params(preview=False, object_auto=False, redetect=False,
                                              object_box=(30, 20, 60, 44), object_frame=2))
    det = RunReader(run).read(detect)
    assert det.object_prompt == {"box": [30.0, 20.0, 60.0, 44.0], "point": None, "frame": 2}
    assert segment.prompt_frame(det) == 2 and np.flatnonzero(det["object_score"] == 1.0).tolist() == [2]


# ---------------------------------------------------------------- no path around the loaders
# Functions outside the stage modules that may still build a path from a stage folder name: they
# write synthetic runs for tests, or take a run folder as one of several input kinds.
PATH_BUILDERS_ALLOWED = {"make_synthetic_run", "read_frames_any", "_find_mask"}


def test_no_module_builds_a_path_into_another_stage_folder():
    """``run_dir / "03_segment" / ...`` outside 03_segment's own module bypasses its loader and the
    declared dependencies: read through ``ctx.read`` (a stage) or `RunReader` (anything else)."""
    import ast

    import hoi_cli

    root = Path(hoi_cli.__file__).parent
    owners = {name: module.rsplit(".", 1)[1] for name, module in pl.STAGES.items()}
    offenders = []

    class Finder(ast.NodeVisitor):
        def __init__(self, path: Path):
            self.path, self.functions = path, ["<module>"]

        def visit_FunctionDef(self, node):
            self.functions.append(node.name)
            self.generic_visit(node)
            self.functions.pop()

        def visit_BinOp(self, node):
            for side in (node.left, node.right) if isinstance(node.op, ast.Div) else ():
                stage = side.value if isinstance(side, ast.Constant) and isinstance(side.value, str) else None
                own = stage in owners and self.path.parent.name == "stages" and self.path.stem == owners[stage]
                if stage in owners and not own and self.functions[-1] not in PATH_BUILDERS_ALLOWED:
                    offenders.append(f"{self.path.relative_to(root)}:{node.lineno} {self.functions[-1]}() / {stage!r}")
            self.generic_visit(node)

    for path in sorted(root.rglob("*.py")):
        Finder(path).visit(ast.parse(path.read_text()))
    assert not sorted(set(offenders)), "\n".join(sorted(set(offenders)))


def test_layout_mask_mode_draws_03_segments_object_boxes_including_those_the_track_carried(run):
    """In mask mode the object box is 03_segment's (`load_object_boxes`), not recomputed from the
    masks: a frame whose prompted mask was lost keeps the box the track carried there."""
    z = dict(np.load(run / "03_segment" / "masks.npz"))
    obj = segment.load_masks(run)["object"]
    from hoi_cli.segment.propagate import boxes_from_masks

    boxes = boxes_from_masks(obj)
    assert np.isfinite(boxes).all()
    carried = np.array([20.0, 10.0, 52.0, 40.0], np.float32)
    boxes[2] = carried  # as if frame 2's mask was lost and the track carried the box there
    z["object_boxes"] = boxes
    np.savez_compressed(run / "03_segment" / "masks.npz", **z)
    ctx = StageContext(run, run / "out", layout.Params(object_box_from="mask", write_video=False))
    assert np.array_equal(ctx.read(segment, what="object_boxes"), boxes)
    (run / "out").mkdir()
    layout.run(ctx)
    with np.load(run / "out" / "layout.npz") as out:
        drawn = out["boxes"][:, 2]
        maps = out["layout"][:, 2]
    assert np.array_equal(drawn, boxes)
    assert maps[2, 10:40, 20:52].all() and maps[2].sum() == 255 * 30 * 32  # columns 20..51, rows 10..39
