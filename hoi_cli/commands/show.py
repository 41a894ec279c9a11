"""`hoi show RUN`: a contact sheet (PNG) and a side-by-side video of every stage's outputs.

Columns are the stages that exist in the run (complete: their manifest is there), in pipeline
order; the sheet's rows are a few frames spread over the clip; the video shows every frame.
What each column draws:

    00_frames      the frame
    01_detect      hand boxes (tight thin, Re-HOLD square thick; left blue, right orange),
                   object box (green), keypoints
    02_hands       the fitted meshes over the frame
    03_segment     object mask (green) and hand mask (blue) over the frame
    04_mlo         normals of the front-most MLO layer (by confidence), as RGB (n + 1) / 2
    05_silhouette  the HOI structure
    06_layout      the layout channels over the frame (R left, G right, B object)
    07_genhoi      the object-removed frame
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _put_label(img, text: str):
    import cv2

    cv2.rectangle(img, (0, 0), (img.shape[1], 16), (0, 0, 0), -1)
    cv2.putText(img, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


class _Stages:
    """Lazily loaded stage outputs of one run, drawn one frame at a time."""

    def __init__(self, run_dir: Path):
        from ..pipeline import STAGES

        self.run_dir = run_dir
        self.names = [s for s in STAGES if (run_dir / s / "manifest.json").exists()]
        self.cache: dict = {}

    def frame(self, t: int):
        from ..stages.frames import load_frames

        return load_frames(self.run_dir, [t])[0]

    def _get(self, key, fn):
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]

    def draw(self, name: str, t: int):
        import cv2
        import numpy as np

        base = self.frame(t).copy()
        if name == "00_frames":
            return base
        if name == "01_detect":
            d = self._get("det", lambda: dict(np.load(self.run_dir / "01_detect" / "detections.npz")))
            colors = ((60, 120, 255), (255, 140, 40))
            for s in range(2):
                for key, th in (("hand_boxes", 1), ("hand_boxes_square", 2)):
                    b = d.get(key)
                    if b is not None and np.isfinite(b[t, s]).all():
                        x0, y0, x1, y1 = (int(round(v)) for v in b[t, s])
                        cv2.rectangle(base, (x0, y0), (x1, y1), colors[s], th)
                kp = d.get("hand_keypoints")
                if kp is not None:
                    for x, y, c in kp[t, s]:
                        if np.isfinite(x) and np.isfinite(y) and c > 0:
                            cv2.circle(base, (int(x), int(y)), 2, colors[s], -1)
            b = d.get("object_boxes")
            if b is not None and np.isfinite(b[t]).all():
                x0, y0, x1, y1 = (int(round(v)) for v in b[t])
                cv2.rectangle(base, (x0, y0), (x1, y1), (40, 220, 60), 2)
            return base
        if name == "02_hands":
            from ..handmodel.render import SLOT_COLORS, draw_mesh
            from ..render.scene import read_hands

            h = self._get("hands", lambda: read_hands(self.run_dir))
            for s in range(2):
                if h["valid"][t, s]:
                    base = draw_mesh(base, np.asarray(h["vertices"][t, s], np.float64), h["faces"], h["K"],
                                     color=SLOT_COLORS[s])
            return base
        if name == "03_segment":
            from ..render.scene import read_masks

            m = self._get("masks", lambda: read_masks(self.run_dir))
            out = base.astype(np.float32)
            for key, col in (("object", (40, 220, 60)), ("hand", (60, 120, 255))):
                if m is not None and key in m:
                    sel = m[key][t]
                    out[sel] = 0.5 * out[sel] + 0.5 * np.array(col, np.float32)
            return out.astype(np.uint8)
        if name == "04_mlo":
            from ..stages.mlo import load_mlo_frame

            f = load_mlo_frame(self.run_dir, t)
            conf = f["confidence"].astype(np.int32)
            present = f["depth"] > 0
            conf[~present] = -1
            best = conf.argmax(0)
            n = np.take_along_axis(f["normals"], best[None, ..., None], 0)[0]
            any_ = present.any(0)
            n[~any_] = 0
            return n
        if name == "05_silhouette":
            from ..stages.silhouette import load_silhouette

            return self._get("sil", lambda: load_silhouette(self.run_dir))["structure"][t]
        if name == "06_layout":
            from ..stages.layout import load_layout

            lay = self._get("lay", lambda: load_layout(self.run_dir))["layout"][t]
            rgb = np.moveaxis(lay, 0, -1)
            if rgb.shape[:2] != base.shape[:2]:
                rgb = cv2.resize(rgb, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_NEAREST)
            return (0.5 * base + 0.5 * rgb).astype(np.uint8)
        if name == "07_genhoi":
            from ..video import read_video

            v = self._get("gen", lambda: read_video(self.run_dir / "07_genhoi" / "object_removed.mp4"))
            v = v[0] if isinstance(v, tuple) else v
            return np.asarray(v[t])[: base.shape[0], : base.shape[1]]
        return base

    def tile(self, name: str, t: int, height: int):
        import cv2
        import numpy as np

        try:
            img = np.ascontiguousarray(self.draw(name, t)[..., :3]).astype(np.uint8)
        except Exception as exc:  # one broken stage must not hide the others
            img = np.full((height, height, 3), 60, np.uint8)
            cv2.putText(img, f"error: {type(exc).__name__}", (4, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (255, 80, 80), 1, cv2.LINE_AA)
        w = max(1, int(round(img.shape[1] * height / img.shape[0])))
        img = cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)
        return _put_label(np.ascontiguousarray(img), f"{name} t={t}")


def make_show(run_dir: Path, out_dir: Path, n_frames: int = 4, height: int = 200, video: bool = True,
              max_video_frames: int = 0) -> dict:
    """Write ``show.png`` (+ ``show.mp4``) into ``out_dir``; returns their paths and the stages shown."""
    import numpy as np

    from ..errors import BadInputError
    from ..stages.frames import load_meta
    from ..video import write_image, write_video

    st = _Stages(run_dir)
    if "00_frames" not in st.names:
        raise BadInputError(f"{run_dir} has no complete 00_frames", "run `hoi preprocess` on the clip first")
    meta = load_meta(run_dir)
    T = int(meta["n_frames"])
    picks = sorted(set(np.linspace(0, T - 1, min(n_frames, T)).round().astype(int).tolist()))
    rows = [np.concatenate([st.tile(name, t, height) for name in st.names], axis=1) for t in picks]
    sheet = np.concatenate(rows, axis=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_image(out_dir / "show.png", sheet)
    result = {"sheet": str(out_dir / "show.png"), "stages": st.names, "frames": picks}
    if video:
        last = T if max_video_frames <= 0 else min(T, max_video_frames)
        write_video(out_dir / "show.mp4",
                    (np.concatenate([st.tile(name, t, height) for name in st.names], axis=1) for t in range(last)),
                    float(meta.get("fps") or 10.0))
        result["video"] = str(out_dir / "show.mp4")
    return result


def show_command(
    run: Path = typer.Argument(..., help="a run folder (runs/<clip-id>)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default: RUN/show)"),
    frames: int = typer.Option(4, "--frames", "-n", help="rows of the contact sheet"),
    height: int = typer.Option(200, "--height", help="tile height in px"),
    video: bool = typer.Option(True, "--video/--no-video", help="also write the side-by-side video"),
    max_video_frames: int = typer.Option(0, "--max-video-frames", help="0 = all frames"),
) -> None:
    """Contact sheet (PNG) and side-by-side video of every stage's outputs, to check a run at a glance."""
    import json
    import sys

    res = make_show(run, out or run / "show", frames, height, video, max_video_frames)  # HoiError: the app reports it
    print(f"stages: {', '.join(res['stages'])}", file=sys.stderr)
    typer.echo(json.dumps(res))
