"""Build the project's own MANO-format hand model: ``python -m hoi_cli.handmodel.build``.

Writes ``hoi_cli/assets/hand_model/MANO_RIGHT.npz`` and ``MANO_LEFT.npz`` (plus ``README.md``). The
files hold the nine keys smplx reads (v_template, shapedirs, posedirs, J_regressor, weights,
kintree_table, f, hands_components, hands_mean) and three extra keys that smplx ignores:
``tip_vertex_ids`` (thumb..pinky), ``model_name`` and ``builder_version``.

How it is made (everything is deterministic, no learned data):

1. A skeleton: MANO's 16 joints in MANO's order (wrist; index, middle, pinky, ring, thumb,
   three joints each) plus five fingertips, with adult proportions (wrist joint to the
   middle fingertip 18.6 cm, palm 8.4 cm wide at the knuckles).
2. A signed distance field of the hand: tapered capsules for the phalanges and the thumb
   metacarpal, a rounded box for the palm, an ellipsoid for the thenar eminence and a
   short wrist stub; the fingers are blended into the palm with a smooth minimum (webs),
   the fingers among themselves with a hard minimum (separate fingers).
3. Marching cubes (scikit-image) on a 2.4 mm grid, Taubin smoothing: one closed,
   watertight, 2-manifold surface (about 2.5k vertices).
4. Skinning weights from distances to the bones (each vertex binds to the bones of its
   nearest finger chain and the palm, exponential falloff), smoothed over the mesh and
   normalised to sum to one.
5. J_regressor: for each joint, a non-negative, sum-to-one combination of nearby vertices
   that reproduces the joint exactly on the template.
6. shapedirs: ten linearised skeleton edits (overall size, finger length, palm width, palm
   length, thickness, thumb length, index/ring ratio, pinky length, finger girth, finger
   spread), each scaled so that beta = +-1 is about one standard deviation of adult
   variation.
7. posedirs: zeros (no pose-corrective blend shapes; documented weakness).
8. hands_components: an orthonormal 45x45 basis whose first rows are anatomical synergies
   (curl, spread, thumb opposition ...); hands_mean: a relaxed, slightly curled pose.
9. The left hand: x-mirrored template, flipped faces, mirrored shapedirs and pose basis.

Frame of the right hand (template): metres, wrist joint at the origin, +x from the wrist
towards the middle finger, +y out of the back of the hand (dorsal), the thumb on -z.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..conventions import FINGERS, MANO_FINGER_JOINTS, MANO_PARENTS
from ..errors import HoiError
from ..resources import hand_model_dir
from .mano_io import anatomical_axes_from_joints

BUILDER_VERSION = "1"
ASSET_DIR = hand_model_dir()

# MANO joint order (conventions.MANO_JOINT_NAMES): 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky,
# 10-12 ring, 13-15 thumb; as lists, which numpy takes as index arrays (J[ids[1:]]).
CHAINS = {name: list(ids) for name, ids in MANO_FINGER_JOINTS.items()}


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _rot_y(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


# ------------------------------------------------------------------ skeleton
def skeleton():
    """Joints (16,3), tips (5,3) in FINGERS order, and radii per joint segment (16,2)."""
    J = np.zeros((16, 3))
    tips = {}
    radii = np.zeros((16, 2))  # radius at the start and the end of the segment a joint drives
    # name: (mcp position, splay deg about y (+ towards the pinky side), lengths, radius at mcp)
    fingers = {
        "index": ((0.0880, -0.0010, -0.0250), -7.0, (0.0420, 0.0250, 0.0215), 0.0088),
        "middle": ((0.0920, 0.0000, -0.0040), -1.0, (0.0460, 0.0280, 0.0230), 0.0090),
        "ring": ((0.0880, -0.0010, 0.0160), 5.0, (0.0420, 0.0265, 0.0225), 0.0085),
        "pinky": ((0.0800, -0.0040, 0.0340), 11.0, (0.0340, 0.0205, 0.0205), 0.0076),
    }
    for name, (mcp, splay, lengths, r0) in fingers.items():
        ids = CHAINS[name]
        d = _rot_y(-splay) @ np.array([1.0, 0.0, 0.0])  # rotate about y: +splay -> +z
        d = _unit(d + np.array([0.0, -0.02, 0.0]))
        p = np.array(mcp, dtype=np.float64)
        J[ids[0]] = p
        J[ids[1]] = p + lengths[0] * d
        J[ids[2]] = J[ids[1]] + lengths[1] * d
        tips[name] = J[ids[2]] + lengths[2] * d
        taper = [r0, r0 * 0.90, r0 * 0.84, r0 * 0.78]
        for k, j in enumerate(ids):
            radii[j] = (taper[k], taper[k + 1])
    # thumb: CMC inside the thenar, metacarpal pointing out and towards the palm side
    cmc = np.array([0.0200, -0.0110, -0.0190])
    d1 = _unit(np.array([np.cos(np.deg2rad(42)), -0.30, -np.sin(np.deg2rad(42))]))
    d2 = _unit(np.array([np.cos(np.deg2rad(30)), -0.28, -np.sin(np.deg2rad(30))]))
    J[13] = cmc
    J[14] = cmc + 0.0460 * d1
    J[15] = J[14] + 0.0330 * d2
    tips["thumb"] = J[15] + 0.0290 * d2
    radii[13] = (0.0125, 0.0105)
    radii[14] = (0.0100, 0.0093)
    radii[15] = (0.0093, 0.0086)
    radii[0] = (0.0, 0.0)
    return J, np.array([tips[n] for n in FINGERS]), radii


# ------------------------------------------------------------------ signed distance field
def _sd_capsule(P, a, b, ra, rb):
    ba = b - a
    t = np.clip(((P - a) @ ba) / (ba @ ba), 0.0, 1.0)
    r = ra + (rb - ra) * t
    return np.linalg.norm(P - (a + t[:, None] * ba), axis=1) - r


def _sd_round_box(P, center, half, rounding, R=None):
    R = np.eye(3) if R is None else R
    q = np.abs((P - center) @ R) - (np.asarray(half) - rounding)
    return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0) - rounding


def _sd_ellipsoid(P, center, radii, R=None):
    # approximate (bound-correct near the surface)
    R = np.eye(3) if R is None else R
    q = ((P - center) @ R) / np.asarray(radii)
    k0 = np.linalg.norm(q, axis=1)
    k1 = np.linalg.norm(q / np.asarray(radii), axis=1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _smin(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def hand_sdf(P, J, tips, radii):
    tip_of = {CHAINS[n][2]: tips[i] for i, n in enumerate(FINGERS)}
    # palm: rounded box from the wrist to the knuckles, slightly wider at the knuckles
    palm = _sd_round_box(P, np.array([0.047, -0.0015, 0.0045]), (0.047, 0.0140, 0.0395), 0.0120)
    knuckles = np.min([_sd_capsule(P, J[1] - [0.012, 0, 0], J[7] - [0.010, 0, 0], 0.0125, 0.0110)], axis=0)
    palm = _smin(palm, knuckles, 0.010)
    wrist = _sd_ellipsoid(P, np.array([-0.004, -0.0010, 0.0040]), (0.030, 0.0175, 0.0300))
    palm = _smin(palm, wrist, 0.012)
    # thenar eminence (the ball of the thumb)
    tdir = _unit(J[14] - J[13])
    R = np.stack([tdir, _unit(np.cross(tdir, [0, 1.0, 0])), None or _unit(np.cross(np.cross(tdir, [0, 1.0, 0]), tdir))], axis=1)
    thenar = _sd_ellipsoid(P, J[13] + 0.45 * (J[14] - J[13]) + np.array([0.0, -0.004, 0.003]), (0.030, 0.0145, 0.0150), R)
    palm = _smin(palm, thenar, 0.010)
    fingers = []
    for name in FINGERS:
        ids = CHAINS[name]
        d = np.full(len(P), np.inf)
        pts = [J[i] for i in ids] + [tip_of[ids[2]]]
        for k, j in enumerate(ids):
            a, b = pts[k], pts[k + 1]
            ra, rb = radii[j]
            if k == 2:  # end the distal capsule at the fingertip surface
                b = b - _unit(b - a) * rb
            d = np.minimum(d, _sd_capsule(P, a, b, ra, rb))
        fingers.append(d)
    fingers = np.min(fingers, axis=0)
    return _smin(palm, fingers, 0.0065)


def extract_surface(J, tips, radii, spacing=0.0024, target_faces=5000):
    from skimage import measure

    lo = np.array([-0.050, -0.055, -0.100])
    hi = np.array([0.210, 0.040, 0.080])
    axes = [np.arange(lo[i], hi[i] + spacing, spacing) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    sdf = hand_sdf(grid.reshape(-1, 3), J, tips, radii).reshape(grid.shape[:3])
    # cut the forearm off with a rounded end: keep x > -0.030
    sdf = np.pad(sdf, 1, constant_values=1.0)  # closed at the grid's border
    verts, faces, _, _ = measure.marching_cubes(sdf, level=0.0, spacing=(spacing,) * 3)
    verts = verts + lo - spacing
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=True)
    parts = mesh.split(only_watertight=False)
    mesh = max(parts, key=lambda m: len(m.vertices))
    trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=-0.53, iterations=10)
    if target_faces and len(mesh.faces) > target_faces:
        import fast_simplification

        v, f = fast_simplification.simplify(np.asarray(mesh.vertices, dtype=np.float64),
                                            np.asarray(mesh.faces, dtype=np.int64),
                                            target_count=target_faces, agg=5)
        mesh = trimesh.Trimesh(v, f, process=True)
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=-0.53, iterations=10)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


# ------------------------------------------------------------------ skinning
def _seg_dist(P, a, b):
    ba = b - a
    t = np.clip(((P - a) @ ba) / (ba @ ba), 0.0, 1.0)
    return np.linalg.norm(P - (a + t[:, None] * ba), axis=1)


def bone_segments(J, tips):
    """For each joint, the segments of the body part it moves."""
    tip_of = {CHAINS[n][2]: tips[i] for i, n in enumerate(FINGERS)}
    segs = {0: [(J[0] - [0.03, 0, 0], J[0])] + [(J[0], J[c]) for c in (1, 4, 7, 10)]
            + [(J[0] + [0.02, 0, 0.03], J[7]), (J[0] + [0.02, 0, -0.02], J[1])]}
    for ids in CHAINS.values():
        for k, j in enumerate(ids):
            end = J[ids[k + 1]] if k < 2 else tip_of[j]
            segs[j] = [(J[j], end)]
    return segs


def skinning_weights(V, faces, J, tips, tau=0.0035, smooth_iters=6):
    segs = bone_segments(J, tips)
    D = np.stack([np.min([_seg_dist(V, a, b) for a, b in segs[j]], axis=0) for j in range(16)], axis=1)
    # which chain each vertex belongs to (nearest bone; the palm counts as its own chain)
    chain_of_joint = np.zeros(16, dtype=np.int64)
    for c, ids in enumerate(CHAINS.values()):
        chain_of_joint[ids] = c + 1
    nearest = D.argmin(axis=1)
    vchain = chain_of_joint[nearest]
    allowed = (chain_of_joint[None, :] == vchain[:, None]) | (chain_of_joint[None, :] == 0)
    # a palm vertex may also bind to the first bone of the nearest finger (knuckle region)
    for ids in CHAINS.values():
        first = ids[0]
        near_first = (vchain == 0) & (np.argsort(D, axis=1)[:, 1] == first)
        allowed[near_first, first] = True
    W = np.exp(-(D - D.min(axis=1, keepdims=True)) / tau) * allowed
    W /= W.sum(axis=1, keepdims=True)
    # smooth over the mesh (uniform Laplacian), keeping rows normalised
    import scipy.sparse as sp

    n = len(V)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    A = ((A + A.T) > 0).astype(np.float64)
    deg = np.asarray(A.sum(axis=1)).ravel()
    Mavg = sp.diags(1.0 / deg) @ A
    for _ in range(smooth_iters):
        W = 0.5 * W + 0.5 * (Mavg @ W)
    W[W < 1e-4] = 0.0
    W /= W.sum(axis=1, keepdims=True)
    return W


# ------------------------------------------------------------------ joint regressor
def joint_regressor(V, J, radii):
    from scipy.optimize import nnls

    R = np.zeros((16, len(V)))
    for j in range(16):
        r = max(radii[j].max(), 0.0085) * 1.6 if j else 0.025
        d = np.linalg.norm(V - J[j], axis=1)
        idx = np.argsort(d)[:60]
        idx = idx[d[idx] < max(r, d[idx[12]] + 1e-6)]
        A = np.vstack([V[idx].T, 1e2 * np.ones(len(idx))])
        b = np.concatenate([J[j], [1e2]])
        # mild preference for near vertices: tiny ridge towards uniform weights
        lam = 1e-3
        A = np.vstack([A, lam * np.eye(len(idx))])
        b = np.concatenate([b, lam * np.full(len(idx), 1.0 / len(idx))])
        w, _ = nnls(A, b)
        w /= w.sum()
        R[j, idx] = w
    return R


# ------------------------------------------------------------------ shape space
def _skeleton_edit_displacement(V, W, J, tips, edit):
    """Vertex displacement of a small skeleton edit, carried to the skin with the weights.

    ``edit(J, tips) -> (J2, tips2, radial)``: new joints and tips and a per-joint radial scale
    change (girth). Each bone is given the similarity transform that maps its old segment to
    its new one (translation, scale along the bone, and the radial scale); the displacement
    blends these by the skinning weights.
    """
    J2, tips2, radial = edit(J.copy(), tips.copy())
    segs_old = bone_segments(J, tips)
    segs_new = bone_segments(J2, tips2)
    disp = np.zeros_like(V)
    for j in range(16):
        a, b = segs_old[j][0] if j else (J[0], J[4])
        a2, b2 = segs_new[j][0] if j else (J2[0], J2[4])
        if j == 0:
            # palm: affine map fitted to the palm landmarks (wrist + four MCPs + thumb CMC)
            src = J[[0, 1, 4, 7, 10, 13]]
            dst = J2[[0, 1, 4, 7, 10, 13]]
            X = np.hstack([src, np.ones((len(src), 1))])
            M, *_ = np.linalg.lstsq(X, dst, rcond=None)
            # the palm's thickness is undetermined by coplanar landmarks: scale y separately
            Mfull = M.copy()
            Mfull[:3, 1] = 0.0
            Mfull[1, 1] = 1.0 + radial[0]
            Mfull[3, 1] = (dst[:, 1] - src[:, 1] * (1.0 + radial[0])).mean()
            new = np.hstack([V, np.ones((len(V), 1))]) @ Mfull
        else:
            u = _unit(b - a)
            L, L2 = np.linalg.norm(b - a), np.linalg.norm(b2 - a2)
            rel = V - a
            along = rel @ u
            perp = rel - along[:, None] * u
            u2 = _unit(b2 - a2)
            new = a2 + (along * (L2 / L))[:, None] * u2 + perp * (1.0 + radial[j])
        disp += W[:, j:j + 1] * (new - V)
    return disp


# One skeleton edit per shape direction: (J, tips) -> edited (J, tips) and per-joint radial growth.
def _shape_scale_all(J, t):
    s = 1.01
    return J * s, t * s, np.full(16, 0.01)

def _shape_finger_length(J, t):
    for i, name in enumerate(FINGERS):
        ids = CHAINS[name]
        if name == "thumb":
            continue
        base = J[ids[0]].copy()
        for j in ids[1:]:
            J[j] = base + (J[j] - base) * 1.01
        t[i] = base + (t[i] - base) * 1.01
    return J, t, np.zeros(16)

def _shape_palm_width(J, t):
    zc = J[[1, 4, 7, 10], 2].mean()
    for name, ids in CHAINS.items():
        shift = (J[ids[0], 2] - zc) * 0.01
        J[ids, 2] += shift
        t[FINGERS.index(name), 2] += shift
    return J, t, np.zeros(16)

def _shape_palm_length(J, t):
    for name, ids in CHAINS.items():
        if name == "thumb":
            continue
        shift = J[ids[0], 0] * 0.01
        J[ids, 0] += shift
        t[FINGERS.index(name), 0] += shift
    return J, t, np.zeros(16)

def _shape_thickness(J, t):
    r = np.zeros(16)
    r[0] = 0.01
    r[1:] = 0.005
    return J, t, r

def _shape_thumb_length(J, t):
    base = J[13].copy()
    J[14:16] = base + (J[14:16] - base) * 1.01
    t[0] = base + (t[0] - base) * 1.01
    return J, t, np.zeros(16)

def _shape_index_ring(J, t):  # digit ratio: longer index, shorter ring
    for name, s in (("index", 1.01), ("ring", 0.99)):
        ids = CHAINS[name]
        base = J[ids[0]].copy()
        J[ids[1:]] = base + (J[ids[1:]] - base) * s
        i = FINGERS.index(name)
        t[i] = base + (t[i] - base) * s
    return J, t, np.zeros(16)

def _shape_pinky_length(J, t):
    ids = CHAINS["pinky"]
    base = J[ids[0]].copy()
    J[ids[1:]] = base + (J[ids[1:]] - base) * 1.01
    t[4] = base + (t[4] - base) * 1.01
    return J, t, np.zeros(16)

def _shape_girth(J, t):
    r = np.full(16, 0.01)
    r[0] = 0.0
    return J, t, r

def _shape_spread(J, t):
    for name, deg in (("index", -0.6), ("ring", 0.6), ("pinky", 1.2)):
        ids = CHAINS[name]
        base = J[ids[0]].copy()
        R = _rot_y(-deg)
        J[ids[1:]] = base + (J[ids[1:]] - base) @ R.T
        i = FINGERS.index(name)
        t[i] = base + (t[i] - base) @ R.T
    return J, t, np.zeros(16)


# (edit, percent per unit beta): beta = 1 is about one standard deviation
SHAPE_EDITS = [(_shape_scale_all, 5.5), (_shape_finger_length, 4.0), (_shape_palm_width, 4.5),
               (_shape_palm_length, 3.5), (_shape_thickness, 6.0), (_shape_thumb_length, 4.0),
               (_shape_index_ring, 2.5), (_shape_pinky_length, 4.0), (_shape_girth, 6.0),
               (_shape_spread, 4.0)]


def shape_space(V, W, J, tips):
    """Shape blend shapes ``(V,3,10)``: each direction of `SHAPE_EDITS` as a vertex displacement."""
    S = np.zeros((len(V), 3, 10))
    for k, (edit, amount) in enumerate(SHAPE_EDITS):
        S[:, :, k] = _skeleton_edit_displacement(V, W, J, tips, edit) * amount
    return S


# ------------------------------------------------------------------ pose space
def anatomical_axes(J, tips, is_rhand=True):
    """Per-joint 3x3 [flex, abduct, twist] axes (columns) in the rest frame, for any MANO-format
    hand. Positive flex curls the finger towards the palm; see `hoi_cli.handmodel.fit`."""
    return anatomical_axes_from_joints(J, tips, is_rhand)


def pose_basis(J, tips, is_rhand=True):
    axes = anatomical_axes(J, tips, is_rhand)  # (16,3,3)

    def vec(d):  # d: {joint: (flex, abd, twist)}
        v = np.zeros((15, 3))
        for j, (f, a, t) in d.items():
            v[j - 1] = axes[j] @ np.array([f, a, t])
        return v.ravel()

    fingers4 = ("index", "middle", "ring", "pinky")
    syn = []
    syn.append(vec({j: (1, 0, 0) for n in fingers4 for j in CHAINS[n]}))  # curl all
    syn.append(vec({CHAINS["index"][0]: (0, -1, 0), CHAINS["ring"][0]: (0, 1, 0),
                    CHAINS["pinky"][0]: (0, 2, 0)}))  # spread
    syn.append(vec({13: (0.6, 0.8, 0.4), 14: (0.5, 0, 0), 15: (0.5, 0, 0)}))  # thumb opposition
    syn.append(vec({CHAINS[n][0]: (1, 0, 0) for n in fingers4}))  # MCP flex (flat grasp)
    syn.append(vec({j: (1, 0, 0) for n in fingers4 for j in CHAINS[n][1:]}))  # hook
    syn.append(vec({j: (1, 0, 0) for j in CHAINS["index"]}))  # point: index alone
    syn.append(vec({j: (1, 0, 0) for n in ("ring", "pinky") for j in CHAINS[n]}))
    syn.append(vec({13: (1, 0, 0), 14: (1, 0, 0), 15: (1, 0, 0)}))  # thumb curl
    B = []
    for s in syn:
        v = s.copy()
        for b in B:
            v -= (v @ b) * b
        if np.linalg.norm(v) > 1e-6:
            B.append(v / np.linalg.norm(v))
    for i in range(45):  # complete with the canonical basis
        v = np.eye(45)[i]
        for b in B:
            v = v - (v @ b) * b
        if np.linalg.norm(v) > 1e-6:
            B.append(v / np.linalg.norm(v))
        if len(B) == 45:
            break
    comps = np.array(B)
    relaxed = {}
    for n in ("index", "middle", "ring", "pinky"):
        a, b, c = CHAINS[n]
        k = {"index": 0.8, "middle": 0.95, "ring": 1.05, "pinky": 1.15}[n]
        relaxed[a], relaxed[b], relaxed[c] = (0.18 * k, 0, 0), (0.30 * k, 0, 0), (0.18 * k, 0, 0)
    relaxed.update({13: (0.10, 0.10, 0.0), 14: (0.15, 0, 0), 15: (0.15, 0, 0)})
    mean = vec(relaxed)
    return comps, mean


# ------------------------------------------------------------------ mirror + assemble
def mirror_model(m: dict) -> dict:
    """Right -> left: mirror x, flip the faces' winding, mirror shapedirs and the pose basis."""
    out = dict(m)
    M = np.array([1.0, -1.0, -1.0])  # axis-angle of an x-mirrored rotation: (x, -y, -z)
    out["v_template"] = m["v_template"] * [-1.0, 1.0, 1.0]
    sd = m["shapedirs"].copy()
    sd[:, 0, :] *= -1
    out["shapedirs"] = sd
    out["f"] = m["f"][:, ::-1].copy()
    out["hands_components"] = (m["hands_components"].reshape(45, 15, 3) * M).reshape(45, 45)
    out["hands_mean"] = (m["hands_mean"].reshape(15, 3) * M).ravel()
    pd = m["posedirs"].copy()  # zeros here; mirroring a general posedirs is not needed
    out["posedirs"] = pd
    return out


# import name -> distribution; all in the ``build-hand`` extra
BUILD_MODULES = {"skimage": "scikit-image", "trimesh": "trimesh", "fast_simplification": "fast-simplification",
                 "scipy": "scipy"}
BUILD_HINT = 'pip install "hoi[build-hand]"  (or, in a clone: pip install -e ".[build-hand]")'


def check_build_dependencies() -> None:
    """Raise one `HoiError` naming the extra when a library the build needs is absent."""
    import importlib.util

    missing = [dist for mod, dist in BUILD_MODULES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise HoiError(f"building the hand model needs {', '.join(missing)} (not installed)", BUILD_HINT)


def build(out_dir: Path = ASSET_DIR, spacing: float = 0.0024, verbose: bool = True) -> dict:
    check_build_dependencies()
    import trimesh

    J, tips, radii = skeleton()
    mesh = extract_surface(J, tips, radii, spacing)
    V = np.asarray(mesh.vertices, dtype=np.float64)
    F = np.asarray(mesh.faces, dtype=np.int64)
    # order the vertices along +x then by chain (cosmetic, deterministic)
    W = skinning_weights(V, F, J, tips)
    Jreg = joint_regressor(V, J, radii)
    tip_ids = []
    for i, name in enumerate(FINGERS):
        d = _unit(tips[i] - J[CHAINS[name][2]])
        cand = np.linalg.norm(V - tips[i], axis=1) < 0.012
        score = np.where(cand, (V - J[CHAINS[name][2]]) @ d, -np.inf)
        tip_ids.append(int(np.argmax(score)))
    S = shape_space(V, W, J, tips)
    comps, mean = pose_basis(J, V[tip_ids], True)
    right = {
        "v_template": V.astype(np.float32),
        "shapedirs": S.astype(np.float32),
        "posedirs": np.zeros((len(V), 3, 135), dtype=np.float32),
        "J_regressor": Jreg.astype(np.float32),
        "weights": W.astype(np.float32),
        "kintree_table": np.stack([np.where(MANO_PARENTS < 0, 4294967295, MANO_PARENTS), np.arange(16)]).astype(np.int64),
        "f": F.astype(np.int64),
        "hands_components": comps.astype(np.float32),
        "hands_mean": mean.astype(np.float32),
        "tip_vertex_ids": np.array(tip_ids, dtype=np.int64),
        "model_name": np.array("hoi-builtin-hand"),
        "builder_version": np.array(BUILDER_VERSION),
    }
    left = mirror_model(right)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "MANO_RIGHT.npz", **right)
    np.savez_compressed(out_dir / "MANO_LEFT.npz", **left)
    info = {
        "vertices": int(len(V)), "faces": int(len(F)),
        "watertight": bool(trimesh.Trimesh(V, F, process=False).is_watertight),
        "hand_length_m": float(np.linalg.norm(tips[2] - J[0])),
        "knuckle_width_m": float(np.ptp(V[np.abs(V[:, 0] - 0.08) < 0.004, 2])),
        "tip_vertex_ids": tip_ids,
        "builder_version": BUILDER_VERSION,
    }
    (out_dir / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    if verbose:
        print(json.dumps(info))
    return info


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ASSET_DIR)
    ap.add_argument("--spacing", type=float, default=0.0024, help="marching-cubes grid step, metres")
    args = ap.parse_args()
    try:
        build(args.out, args.spacing)
    except HoiError as exc:  # a missing library: one line and the extra to install, exit code 1
        print(f"error: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        raise SystemExit(int(exc.exit_code)) from None


if __name__ == "__main__":
    main()
