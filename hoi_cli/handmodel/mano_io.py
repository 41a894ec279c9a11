"""Loading MANO-format hand models (official or built-in) without chumpy, through smplx.MANO.

Convention (model files):
    A MANO-format file holds the nine keys smplx reads: ``v_template (V,3)``, ``shapedirs
    (V,3,10)``, ``posedirs (V,3,135)``, ``J_regressor (16,V)``, ``weights (V,16)``,
    ``kintree_table (2,16)``, ``f (F,3)``, ``hands_components (45,45)``, ``hands_mean (45,)``.
    Extra keys are ignored by smplx; ours: ``tip_vertex_ids (5,)`` (thumb..pinky),
    ``model_name``, ``shapedirs_left_fixed``.

Which model is used (`resolve_model_file`): an explicit ``mano_dir`` (``--mano-dir``), else
``$HOI_MANO_DIR``, else the built-in model in ``hoi_cli/assets/hand_model``. A given folder that lacks
the file is an error (never a silent fallback to the built-in hand).

Official MANO pickles were written with chumpy (Python 2); `load_model_arrays` reads them
with an unpickler that maps every ``chumpy.*`` class to a stand-in and returns plain arrays
(chumpy is never imported). The official LEFT model has a known bug: its ``shapedirs`` equal
the right model's, although its template is the x-mirror of the right one, so the same betas
give differently shaped hands (smplx issue #48; the usual fix, used by InterHand2.6M,
DexYCB, ARCTIC users: ``shapedirs[:, 0, :] *= -1`` for the left hand). `fix_left_shapedirs`
detects and fixes it; converted files record ``shapedirs_left_fixed = True``.

Hand pose convention: `HandModel` builds smplx.MANO with ``use_pca=False,
flat_hand_mean=True``, so ``hand_pose (45,)`` is the absolute axis-angle of joints 1..15
(``hands_mean`` is NOT added).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..conventions import FINGERS, MANO21_TO_OPENPOSE, MANO_FINGER_JOINTS, MANO_TIP_VERTEX_IDS
from ..errors import BadInputError, MissingWeightsError
from ..resources import hand_model_dir

MANO_DIR_ENV = "HOI_MANO_DIR"
BUILTIN_DIR = hand_model_dir()
SMPLX_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f",
              "hands_components", "hands_mean")


# ------------------------------------------------------------------ chumpy-free unpickling
class _ChumpyStandIn:
    """Takes the place of any chumpy class while unpickling; keeps the pickled state."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def to_array(self) -> np.ndarray:
        d = self.__dict__
        for key in ("x", "a", "r", "_state"):
            if key in d and d[key] is not None:
                v = d[key]
                return v.to_array() if isinstance(v, _ChumpyStandIn) else np.asarray(v)
        if self._args:
            return np.asarray(self._args[0])
        raise BadInputError("a chumpy object in the MANO file holds no array",
                            "convert the file with chumpy installed, or use `hoi mano convert`")


class _NoChumpyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStandIn
        if module.startswith("scipy.sparse"):
            import scipy.sparse

            if hasattr(scipy.sparse, name):
                return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def _plain(value):
    if isinstance(value, _ChumpyStandIn):
        return value.to_array()
    if hasattr(value, "toarray") and hasattr(value, "tocsr"):  # scipy sparse
        return np.asarray(value.toarray())
    return value


def load_pickle_no_chumpy(path: str | Path) -> dict:
    """Read an official MANO ``.pkl`` into a dict of plain numpy arrays (no chumpy needed)."""
    data = Path(path).read_bytes()
    try:
        obj = _NoChumpyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise BadInputError(f"cannot read MANO pickle {path}: {type(exc).__name__}: {exc}",
                            "is it MANO_RIGHT.pkl / MANO_LEFT.pkl from mano.is.tue.mpg.de?") from None
    if not isinstance(obj, dict):
        raise BadInputError(f"{path} is not a MANO model (a pickled {type(obj).__name__})", "")
    return {k: _plain(v) for k, v in obj.items()}


def load_model_arrays(path: str | Path) -> dict:
    """The model's arrays (nine smplx keys plus extras), plain numpy, from .pkl or .npz."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"hand model file not found: {path}", "check --mano-dir")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    else:
        d = load_pickle_no_chumpy(path)
    missing = [k for k in SMPLX_KEYS if k not in d]
    if missing:
        raise BadInputError(f"{path} lacks MANO key(s): {', '.join(missing)}", "is it a MANO model file?")
    out = {}
    for k, v in d.items():
        if k in SMPLX_KEYS or k in ("tip_vertex_ids", "shapedirs_left_fixed", "model_name", "J"):
            v = np.asarray(v)
            if v.dtype.kind == "f":
                v = v.astype(np.float64)
            out[k] = v
    out["f"] = out["f"].astype(np.int64)
    out["kintree_table"] = out["kintree_table"].astype(np.int64)
    return out


# ------------------------------------------------------------------ the left shapedirs bug
def left_shapedirs_is_buggy(left: dict, right: dict | None = None) -> bool:
    """True if a LEFT model's shapedirs have the official file's x-sign bug.

    With the right model at hand: the bug is that left and right x-components are equal
    (they should be opposite). Alone: a correct model's first shape direction (mostly size)
    grows the hand outwards along all three axes alike; the bug flips the x-axis' sign.
    """
    sd = np.asarray(left["shapedirs"], dtype=np.float64)
    if right is not None and np.shape(right["shapedirs"]) == sd.shape:
        rs = np.asarray(right["shapedirs"], dtype=np.float64)
        same = np.abs(sd[:, 0] - rs[:, 0]).sum()
        opposite = np.abs(sd[:, 0] + rs[:, 0]).sum()
        return bool(same < opposite)
    v = np.asarray(left["v_template"], dtype=np.float64)
    v = v - v.mean(axis=0)
    c = np.array([np.sum(sd[:, a, 0] * v[:, a]) for a in range(3)])
    return bool(np.sign(c[0]) != np.sign(c[1] + c[2]))


def fix_left_shapedirs(left: dict, right: dict | None = None) -> tuple[dict, bool]:
    """Return (model, fixed?): ``shapedirs[:, 0, :] *= -1`` where the left model has the bug."""
    if bool(np.asarray(left.get("shapedirs_left_fixed", False))) or "model_name" in left:
        return left, False  # converted already, or our own model
    if not left_shapedirs_is_buggy(left, right):
        return left, False
    out = dict(left)
    sd = np.array(left["shapedirs"], dtype=np.float64, copy=True)
    sd[:, 0, :] *= -1
    out["shapedirs"] = sd
    out["shapedirs_left_fixed"] = np.array(True)
    return out, True


def convert_mano_file(src: str | Path, dst: str | Path, right_src: str | Path | None = None) -> dict:
    """Write a chumpy-free ``.npz`` of an official MANO file; returns a summary.

    A LEFT file is fixed for the shapedirs bug (compared with ``right_src`` if given, else
    with MANO_RIGHT.pkl beside it if present, else by the geometric test).
    """
    src = Path(src)
    arrays = load_model_arrays(src)
    is_left = "LEFT" in src.name.upper()
    fixed = False
    if is_left:
        right = None
        cand = Path(right_src) if right_src else src.with_name(src.name.upper().replace("LEFT", "RIGHT"))
        for c in (cand, src.with_name("MANO_RIGHT.pkl"), src.with_name("MANO_RIGHT.npz")):
            if c.exists():
                right = load_model_arrays(c)
                break
        arrays, fixed = fix_left_shapedirs(arrays, right)
        arrays["shapedirs_left_fixed"] = np.array(True)
    keep = {k: arrays[k] for k in SMPLX_KEYS}
    keep["kintree_table"] = arrays["kintree_table"].astype(np.int64)
    for k in ("tip_vertex_ids", "shapedirs_left_fixed", "model_name"):
        if k in arrays:
            keep[k] = arrays[k]
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.npz")
    np.savez_compressed(tmp, **keep)
    os.replace(tmp, dst)
    return {"src": str(src), "dst": str(dst), "side": "left" if is_left else "right",
            "vertices": int(len(keep["v_template"])), "left_shapedirs_fixed": bool(fixed)}


# ------------------------------------------------------------------ which file
def resolve_model_file(side: str, mano_dir: str | Path | None = None) -> tuple[Path, str]:
    """(path, kind) for ``side`` in {"right", "left"}; kind is "mano" or "builtin"."""
    side = side.lower()
    if side not in ("right", "left"):
        raise ValueError(side)
    name = f"MANO_{side.upper()}"
    given = mano_dir or os.environ.get(MANO_DIR_ENV)
    if given:
        d = Path(given).expanduser()
        for ext in (".npz", ".pkl"):
            if (d / (name + ext)).exists():
                return d / (name + ext), "mano"
        raise MissingWeightsError(f"the official MANO {side} hand", f"{name}.pkl", [str(d)],
                                  "download MANO from https://mano.is.tue.mpg.de and point --mano-dir "
                                  f"(or {MANO_DIR_ENV}) at the folder with MANO_RIGHT.pkl and MANO_LEFT.pkl; "
                                  "omit it to use the built-in hand")
    path = BUILTIN_DIR / f"{name}.npz"
    if not path.exists():
        raise MissingWeightsError("the built-in hand model", path.name, [str(BUILTIN_DIR)],
                                  "reinstall hoi (the wheel ships it), or rebuild it: "
                                  'pip install "hoi[build-hand]" && python -m hoi_cli.handmodel.build')
    return path, "builtin"


def tip_vertex_ids(arrays: dict) -> np.ndarray:
    """Fingertip vertex ids (thumb, index, middle, ring, pinky) of whichever model is loaded."""
    if "tip_vertex_ids" in arrays:
        return np.asarray(arrays["tip_vertex_ids"], dtype=np.int64)
    if len(arrays["v_template"]) == 778:
        return MANO_TIP_VERTEX_IDS.copy()
    raise BadInputError("the hand model has no tip_vertex_ids and is not MANO's 778-vertex topology",
                        "add a tip_vertex_ids key (thumb..pinky) to the model file")


def anatomical_axes_from_joints(J: np.ndarray, tips: np.ndarray, is_rhand: bool = True) -> np.ndarray:
    """Per joint, columns [flex, abduct, twist] (rest frame), for any MANO-format hand.

    Convention: ``twist`` is the bone direction (joint -> child joint or tip); ``flex`` is
    perpendicular to the bone and the palm normal, signed so that a positive rotation moves
    the child towards the palm; ``abduct = flex x twist`` (a positive rotation moves the
    child towards the pinky side on both hands' mirrored geometry). Joint 0: identity.
    """
    J = np.asarray(J, dtype=np.float64)
    palm = np.cross(J[1] - J[0], J[7] - J[0])  # index MCP, pinky MCP
    palm = palm / np.linalg.norm(palm) * (1.0 if is_rhand else -1.0)  # points out of the palm
    axes = np.zeros((16, 3, 3))
    axes[0] = np.eye(3)
    for ti, name in enumerate(FINGERS):  # the order of tips
        ids = MANO_FINGER_JOINTS[name]
        for k, j in enumerate(ids):
            child = J[ids[k + 1]] if k < 2 else np.asarray(tips)[ti]
            b = child - J[j]
            b /= np.linalg.norm(b)
            f = np.cross(b, palm)
            f /= np.linalg.norm(f)
            a = np.cross(f, b)
            axes[j] = np.stack([f, a, b], axis=1)
    return axes


# ------------------------------------------------------------------ the model
@dataclass
class HandModel:
    """A MANO-format hand loaded through smplx.MANO (one code path for both kinds)."""

    layer: object  # smplx.MANO
    side: str
    kind: str  # "builtin" | "mano"
    path: Path
    arrays: dict
    tip_ids: np.ndarray

    @property
    def is_rhand(self) -> bool:
        return self.side == "right"

    @property
    def faces(self) -> np.ndarray:
        return np.asarray(self.arrays["f"], dtype=np.int64)

    @property
    def n_vertices(self) -> int:
        return int(len(self.arrays["v_template"]))

    def rest_joints(self, betas=None) -> tuple[np.ndarray, np.ndarray]:
        """(16,3) joints and (5,3) tips of the flat hand with ``betas`` (default zeros)."""
        v = self.arrays["v_template"]
        if betas is not None:
            v = v + np.asarray(self.arrays["shapedirs"])[:, :, : len(betas)] @ np.asarray(betas)
        return self.arrays["J_regressor"] @ v, v[self.tip_ids]

    def anatomical_axes(self) -> np.ndarray:
        J, tips = self.rest_joints()
        return anatomical_axes_from_joints(J, tips, self.is_rhand)

    def forward(self, global_orient, hand_pose, betas, transl=None):
        """smplx forward; returns (vertices (B,V,3), joints (B,21,3) in OpenPose order)."""
        import torch

        out = self.layer(global_orient=global_orient, hand_pose=hand_pose, betas=betas,
                         transl=transl if transl is not None else torch.zeros_like(global_orient))
        verts = out.vertices
        tips = verts[:, torch.as_tensor(self.tip_ids, device=verts.device)]
        j21 = torch.cat([out.joints[:, :16], tips], dim=1)
        return verts, j21[:, torch.as_tensor(MANO21_TO_OPENPOSE, device=verts.device)]


def load_hand_model(side: str, mano_dir: str | Path | None = None, *, dtype=None, device="cpu",
                    batch_size: int = 1) -> HandModel:
    """Load the right or left hand (official MANO if a folder is given/set, else built-in)."""
    import torch
    import smplx
    from smplx.utils import Struct

    path, kind = resolve_model_file(side, mano_dir)
    arrays = load_model_arrays(path)
    if side == "left" and kind == "mano":
        right = None
        for ext in (".npz", ".pkl"):
            r = path.with_name("MANO_RIGHT" + ext)
            if r.exists():
                right = load_model_arrays(r)
                break
        arrays, _ = fix_left_shapedirs(arrays, right)
    # smplx prints "WARNING: You are using a MANO model, with only 10 shape coefficients." to
    # stdout on every load; stdout is for data (``--format json``), so drop that line
    with contextlib.redirect_stdout(io.StringIO()):
        layer = smplx.MANO(str(path), is_rhand=(side == "right"), data_struct=Struct(**arrays), use_pca=False,
                           flat_hand_mean=True, batch_size=batch_size, dtype=dtype or torch.float32,
                           num_betas=10)
    layer = layer.to(device)
    return HandModel(layer, side, kind, path, arrays, tip_vertex_ids(arrays))
