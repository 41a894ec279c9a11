"""The built-in MANO-format hand, chumpy-free MANO loading, the converter, part segmentation."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch

from hoi_cli.conventions import HAND_PARTS, MANO21_TO_OPENPOSE, MANO_PARENTS, OPENPOSE_JOINT_NAMES
from hoi_cli.errors import BadInputError
from hoi_cli.handmodel import mano_io
from hoi_cli.handmodel.mano_io import BUILTIN_DIR, load_hand_model, load_model_arrays


@pytest.fixture(scope="module")
def right():
    return load_hand_model("right")


@pytest.fixture(scope="module")
def left():
    return load_hand_model("left")


def test_asset_loads_in_plain_smplx():
    import smplx

    for side in ("right", "left"):
        layer = smplx.MANO(str(BUILTIN_DIR / f"MANO_{side.upper()}.npz"), ext="npz", use_pca=False,
                           is_rhand=side == "right")
        out = layer(global_orient=torch.zeros(1, 3), hand_pose=torch.zeros(1, 45), betas=torch.zeros(1, 10))
        assert out.vertices.shape[1] == len(np.load(BUILTIN_DIR / f"MANO_{side.upper()}.npz")["v_template"])
        assert torch.isfinite(out.vertices).all()
    assert (BUILTIN_DIR / "MANO_RIGHT.npz").stat().st_size < 4_000_000


def test_watertight_weights_regressor(right):
    import trimesh

    a = right.arrays
    mesh = trimesh.Trimesh(a["v_template"], a["f"], process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert 1000 <= len(a["v_template"]) <= 3500
    np.testing.assert_allclose(a["weights"].sum(1), 1.0, atol=1e-5)
    assert (a["weights"] >= 0).all()
    np.testing.assert_allclose(a["J_regressor"].sum(1), 1.0, atol=1e-5)
    parents = a["kintree_table"][0].copy()
    parents[0] = -1
    np.testing.assert_array_equal(parents, MANO_PARENTS)
    assert a["hands_components"].shape == (45, 45)
    np.testing.assert_allclose(a["hands_components"] @ a["hands_components"].T, np.eye(45), atol=1e-5)


def test_proportions_and_joint_order(right):
    J, tips = right.rest_joints()
    names = OPENPOSE_JOINT_NAMES
    j21 = np.concatenate([J, tips])[MANO21_TO_OPENPOSE]
    p = {n: j21[i] for i, n in enumerate(names)}
    length = np.linalg.norm(p["middle_tip"] - p["wrist"])
    assert 0.17 < length < 0.20  # adult hand
    # the index MCP is nearer to the index tip than to the pinky tip, and so on
    for f, other in (("index", "pinky"), ("pinky", "index"), ("ring", "thumb"), ("thumb", "pinky")):
        first = "cmc" if f == "thumb" else "mcp"
        assert np.linalg.norm(p[f"{f}_{first}"] - p[f"{f}_tip"]) < np.linalg.norm(p[f"{f}_{first}"] - p[f"{other}_tip"])
    # each tip is nearest to its own finger's last joint
    fingers = ("thumb", "index", "middle", "ring", "pinky")
    last = {f: p["thumb_ip"] if f == "thumb" else p[f"{f}_dip"] for f in fingers}
    for f in fingers:
        d = {g: np.linalg.norm(p[f"{f}_tip"] - last[g]) for g in fingers}
        assert min(d, key=d.get) == f
    assert np.linalg.norm(p["thumb_cmc"] - p["thumb_tip"]) < np.linalg.norm(p["thumb_cmc"] - p["pinky_tip"])
    # chain is monotone: each joint further from the wrist than its parent
    for f in ("index", "middle", "ring", "pinky"):
        d = [np.linalg.norm(p[f"{f}_{k}"] - p["wrist"]) for k in ("mcp", "pip", "dip", "tip")]
        assert np.all(np.diff(d) > 0)


def test_shapedirs_change_size_and_fingers(right):
    a = right.arrays
    J0, T0 = right.rest_joints()
    J1, T1 = right.rest_joints(np.eye(10)[0] * 2)
    assert np.linalg.norm(T1[2] - J1[0]) > np.linalg.norm(T0[2] - J0[0]) * 1.05  # bigger hand
    J2, T2 = right.rest_joints(np.eye(10)[1] * 2)
    assert np.linalg.norm(T2[2] - J2[4]) > np.linalg.norm(T0[2] - J0[4]) * 1.04  # longer middle finger
    assert abs(np.linalg.norm(J2[4] - J2[0]) - np.linalg.norm(J0[4] - J0[0])) < 1e-3  # same palm
    assert np.abs(a["shapedirs"]).reshape(-1, 10).max(0).min() > 1e-4  # all 10 do something


def test_left_is_mirror_of_right(right, left):
    torch.manual_seed(0)
    go = torch.randn(1, 3) * 0.5
    hp = torch.randn(1, 45) * 0.3
    b = torch.randn(1, 10)
    vr, jr = right.forward(go, hp, b)
    m = torch.tensor([1.0, -1.0, -1.0])
    vl, jl = left.forward(go * m, (hp.view(1, 15, 3) * m).view(1, 45), b)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(vl, vr * flip, atol=1e-5, rtol=0)
    torch.testing.assert_close(jl, jr * flip, atol=1e-5, rtol=0)


def test_fingers_bend_without_tearing(right):
    ax = right.anatomical_axes()
    hp = np.stack([ax[j] @ [1.4 if j < 13 else 0.6, 0, 0] for j in range(1, 16)]).reshape(1, 45)
    v, j = right.forward(torch.zeros(1, 3), torch.tensor(hp, dtype=torch.float32), torch.zeros(1, 10))
    v = v[0].numpy()
    e = right.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    rest = right.arrays["v_template"]
    ratio = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1) / np.linalg.norm(rest[e[:, 0]] - rest[e[:, 1]], axis=1)
    assert ratio.max() < 4.0 and np.percentile(ratio, 99) < 2.0
    # curled: fingertips come closer to the wrist
    j = j[0].numpy()
    assert np.linalg.norm(j[12] - j[0]) < 0.13  # middle tip
    # tips curl towards the palm side (palm normal points out of the palm)
    J, tips = right.rest_joints()
    palm = np.cross(J[1] - J[0], J[7] - J[0])
    assert (j[12] - j[0]) @ palm > 0


def test_part_segmentation(right):
    from hoi_cli.handmodel.parts import face_labels, model_part_labels

    lab = model_part_labels(right)
    assert set(np.unique(lab)) == set(range(len(HAND_PARTS)))
    tips = right.tip_ids
    assert [HAND_PARTS[lab[t]] for t in tips] == ["thumb", "index", "middle", "ring", "pinky"]
    assert len(face_labels(right.arrays["weights"], right.faces)) == len(right.faces)


def test_tip_ids_function():
    a = {"v_template": np.zeros((778, 3))}
    np.testing.assert_array_equal(mano_io.tip_vertex_ids(a), [744, 320, 443, 554, 671])
    with pytest.raises(BadInputError, match="778-vertex"):
        mano_io.tip_vertex_ids({"v_template": np.zeros((100, 3))})


# ------------------------------------------------------------------ fake official MANO files
def _install_fake_chumpy(monkeypatch):
    ch_mod = types.ModuleType("chumpy.ch")
    root = types.ModuleType("chumpy")

    class Ch:  # chumpy.ch.Ch stand-in: pickles its state dict, like chumpy does
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()
            self._itr = None

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch_mod.Ch = Ch
    root.ch = ch_mod
    monkeypatch.setitem(sys.modules, "chumpy", root)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_mod)
    return Ch


def _write_official_layout(tmp_path, monkeypatch, buggy_left=True):
    """MANO_RIGHT.pkl and MANO_LEFT.pkl in the official layout (chumpy arrays, sparse J_regressor),
    made from the built-in model; the left file carries the official x-sign bug in shapedirs."""
    import scipy.sparse

    Ch = _install_fake_chumpy(monkeypatch)
    src = {s: load_model_arrays(BUILTIN_DIR / f"MANO_{s}.npz") for s in ("RIGHT", "LEFT")}
    for side, a in src.items():
        sd = a["shapedirs"].copy()
        if side == "LEFT" and buggy_left:
            sd = src["RIGHT"]["shapedirs"].copy()  # the bug: the right's shapedirs
        d = {
            "v_template": Ch(a["v_template"]), "shapedirs": Ch(sd), "posedirs": Ch(a["posedirs"]),
            "J_regressor": scipy.sparse.csc_matrix(a["J_regressor"]), "weights": Ch(a["weights"]),
            "kintree_table": a["kintree_table"].astype(np.int64), "f": a["f"].astype(np.uint32),
            "hands_components": a["hands_components"], "hands_mean": a["hands_mean"],
            "J": Ch(a["J_regressor"] @ a["v_template"]), "bs_style": "lbs", "bs_type": "lrotmin",
            "tip_vertex_ids": a["tip_vertex_ids"],  # not in official files (they use 778-vertex ids)
        }
        with open(tmp_path / f"MANO_{side}.pkl", "wb") as fh:
            pickle.dump(d, fh, protocol=2)
    # the pickle names chumpy.ch.Ch; chumpy is not importable when it is read
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    return src


def test_fake_pickle_really_references_chumpy(tmp_path, monkeypatch):
    _write_official_layout(tmp_path, monkeypatch)
    raw = (tmp_path / "MANO_RIGHT.pkl").read_bytes()
    assert b"chumpy.ch" in raw
    with pytest.raises((ModuleNotFoundError, ImportError)):
        pickle.loads(raw)


def test_load_official_pickle_without_chumpy(tmp_path, monkeypatch):
    src = _write_official_layout(tmp_path, monkeypatch)
    a = load_model_arrays(tmp_path / "MANO_RIGHT.pkl")
    np.testing.assert_allclose(a["v_template"], src["RIGHT"]["v_template"])
    assert isinstance(a["J_regressor"], np.ndarray) and a["J_regressor"].shape[0] == 16
    # through --mano-dir (left fixed by comparison with the right file)
    m = load_hand_model("left", tmp_path)
    assert m.kind == "mano"
    np.testing.assert_allclose(m.arrays["shapedirs"], src["LEFT"]["shapedirs"], atol=1e-6)
    # missing folder content -> MissingWeightsError, not a silent fallback
    from hoi_cli.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError):
        load_hand_model("right", tmp_path / "nope")


def test_left_bug_detected_alone_and_not_on_correct_files(tmp_path, monkeypatch):
    src = _write_official_layout(tmp_path, monkeypatch)
    buggy = load_model_arrays(tmp_path / "MANO_LEFT.pkl")
    assert mano_io.left_shapedirs_is_buggy(buggy)  # geometric test, no right file
    assert mano_io.left_shapedirs_is_buggy(buggy, src["RIGHT"])
    good = dict(src["LEFT"])
    assert not mano_io.left_shapedirs_is_buggy(good)
    assert not mano_io.left_shapedirs_is_buggy(good, src["RIGHT"])


def test_convert_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hoi_cli.commands.mano import app

    src = _write_official_layout(tmp_path, monkeypatch)
    out = tmp_path / "npz"
    r = CliRunner().invoke(app, ["convert", str(tmp_path), "--out", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output
    import json

    res = json.loads(r.stdout)
    assert {x["side"] for x in res} == {"left", "right"}
    assert [x["left_shapedirs_fixed"] for x in res if x["side"] == "left"] == [True]
    with np.load(out / "MANO_LEFT.npz", allow_pickle=False) as z:  # no pickle inside
        np.testing.assert_allclose(z["shapedirs"], src["LEFT"]["shapedirs"], atol=1e-6)
        assert bool(z["shapedirs_left_fixed"])
    # converted files load through smplx (one code path) and are not re-fixed
    m = load_hand_model("left", out)
    np.testing.assert_allclose(m.arrays["shapedirs"], src["LEFT"]["shapedirs"], atol=1e-6)
    import smplx

    layer = smplx.MANO(str(out / "MANO_RIGHT.npz"), ext="npz", use_pca=False)
    assert layer.v_template.shape[0] == len(src["RIGHT"]["v_template"])
