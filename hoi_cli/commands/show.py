"""`hoi show RUN`: a contact sheet (PNG) and a video of every stage's outputs, laid out to be read.

Panels are the stages that exist in the run (complete: their manifest is there), plus the
generated video when one is given (``--generated``) or else the newest that `hoi generate` made
from this run (listed in the run's ``generated.jsonl``, or a sidecar beside the run naming it). The
story comes first: source frame, object mask, object removed, generated; then the other stages in
pipeline order. The video shows every frame as a labelled
grid of panels (``columns`` wide, tiles ``tile_width`` px); the contact sheet has one row per
picked frame and one labelled column per panel. What each panel draws:

    00_frames      the frame
    01_detect      hand boxes (tight thin, Re-HOLD square thick; left blue, right orange),
                   object box (green), keypoints
    02_hands       the fitted meshes over the frame
    03_segment     object mask (green) and hand mask (blue) over the frame
    04_mlo         normals of the front-most MLO layer (by confidence), as RGB (n + 1) / 2
    05_silhouette  the HOI structure
    06_layout      the layout channels over the frame (R left, G right, B object)
    07_genhoi      the object-removed frame
    generated      the generated video's frame
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import Format, FormatOption, fail


TITLES = {"00_frames": "source frame", "01_detect": "hands + object box", "02_hands": "hand meshes",
          "03_segment": "object + hand masks", "04_mlo": "MLO normals", "05_silhouette": "HOI structure",
          "06_layout": "layout boxes", "07_genhoi": "object removed", "generated": "generated"}
STORY = ("00_frames", "03_segment", "07_genhoi", "generated")  # shown first: what a reader looks for
LABEL_H = 22


def _label_bar(width: int, text: str, sub: str = ""):
    """A dark bar with white text (and a grey note on its right), ``LABEL_H`` px high."""
    import cv2
    import numpy as np

    bar = np.full((LABEL_H, width, 3), 24, np.uint8)
    scale = 0.5 if width >= 200 else 0.4
    cv2.putText(bar, text, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    if sub:
        (tw, _), _ = cv2.getTextSize(sub, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        cv2.putText(bar, sub, (max(5, width - tw - 5), 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (170, 170, 170), 1,
                    cv2.LINE_AA)
    return bar


class _Stages:
    """Lazily loaded stage outputs of one run, drawn one frame at a time."""

    def __init__(self, run_dir: Path, generated: Path | None = None):
        from ..pipeline import STAGES
        from ..stages.base import RunReader

        self.run_dir = run_dir
        self.run = RunReader(run_dir)  # every stage output is read through its stage's loader
        self.generated = generated
        present = [s for s in STAGES if self.run.has(s)] + (["generated"] if generated else [])
        self.names = [s for s in STORY if s in present] + [s for s in present if s not in STORY]
        self.cache: dict = {}

    def frame(self, t: int):
        from ..stages import frames

        return self.run.read(frames).load([t])[0]

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
            from ..stages import detect

            d = self._get("det", lambda: self.run.read(detect))
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
            from ..stages import hands

            h = self._get("hands", lambda: self.run.read(hands))
            for s in range(2):
                if h["valid"][t, s]:
                    base = draw_mesh(base, np.asarray(h["vertices"][t, s], np.float64), h["faces"], h["K"],
                                     color=SLOT_COLORS[s])
            return base
        if name == "03_segment":
            from ..stages import segment

            m = self._get("masks", lambda: self.run.read(segment))
            out = base.astype(np.float32)
            for key, col in (("object", (40, 220, 60)), ("hand", (60, 120, 255))):
                if m is not None and key in m:
                    sel = m[key][t]
                    out[sel] = 0.5 * out[sel] + 0.5 * np.array(col, np.float32)
            return out.astype(np.uint8)
        if name == "04_mlo":
            from ..stages import mlo

            f = {k: v[0] for k, v in self.run.read(mlo, frames=[t]).items() if k != "layers"}
            conf = f["confidence"].astype(np.int32)
            present = f["depth"] > 0
            conf[~present] = -1
            best = conf.argmax(0)
            n = np.take_along_axis(f["normals"], best[None, ..., None], 0)[0]
            any_ = present.any(0)
            n[~any_] = 0
            return n
        if name == "05_silhouette":
            from ..stages import silhouette

            return self._get("sil", lambda: self.run.read(silhouette))["structure"][t]
        if name == "06_layout":
            from ..stages import layout

            lay = self._get("lay", lambda: self.run.read(layout))["layout"][t]
            rgb = np.moveaxis(lay, 0, -1)
            if rgb.shape[:2] != base.shape[:2]:
                rgb = cv2.resize(rgb, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_NEAREST)
            return (0.5 * base + 0.5 * rgb).astype(np.uint8)
        if name == "generated":
            from ..video import read_video

            v = self._get("generated", lambda: read_video(self.generated)[0])
            return np.asarray(v[min(t, len(v) - 1)])[: base.shape[0], : base.shape[1]]
        if name == "07_genhoi":
            from ..stages import genhoi
            from ..video import read_video

            v = self._get("gen", lambda: read_video(self.run.read(genhoi)["object_removed_video"]))
            v = v[0] if isinstance(v, tuple) else v
            return np.asarray(v[t])[: base.shape[0], : base.shape[1]]
        return base

    def tile(self, name: str, t: int, width: int, height: int):
        """The panel's image fitted into ``width`` x ``height`` (aspect kept, letterboxed)."""
        import cv2
        import numpy as np

        out = np.full((height, width, 3), 40, np.uint8)
        try:
            img = np.ascontiguousarray(self.draw(name, t)[..., :3]).astype(np.uint8)
        except Exception as exc:  # one broken stage must not hide the others
            cv2.putText(out, f"error: {type(exc).__name__}", (6, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (255, 80, 80), 1, cv2.LINE_AA)
            return out
        s = min(width / img.shape[1], height / img.shape[0])
        w, h = max(1, int(round(img.shape[1] * s))), max(1, int(round(img.shape[0] * s)))
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        y0, x0 = (height - h) // 2, (width - w) // 2
        out[y0:y0 + h, x0:x0 + w] = img
        return out

    def grid(self, t: int, n_frames: int, columns: int, tile_w: int, tile_h: int):
        """One video frame: the panels in a labelled grid, ``columns`` wide."""
        import numpy as np

        cells = []
        for name in self.names:
            sub = f"t={t}/{n_frames - 1}" if name == self.names[0] else name if name != "generated" else ""
            cells.append(np.concatenate([_label_bar(tile_w, TITLES.get(name, name), sub),
                                         self.tile(name, t, tile_w, tile_h)], axis=0))
        blank = np.full_like(cells[0], 16)
        cells += [blank] * (-len(cells) % columns)
        rows = [np.concatenate(cells[i:i + columns], axis=1) for i in range(0, len(cells), columns)]
        gap = np.full((2, rows[0].shape[1], 3), 16, np.uint8)
        return _even(np.concatenate([x for r in rows for x in (r, gap)][:-1], axis=0))


def _even(img):
    """Pad to even width and height (H.264 with yuv420 needs them)."""
    import numpy as np

    h, w = img.shape[:2]
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))


def find_generated(run_dir: Path) -> Path | None:
    """The newest video that `hoi generate` made from this run: the sidecars the run's `GENERATED_LOG` lists
    (a video written anywhere), and any sidecar beside the run folder; one counts only while its video exists
    and its sidecar still names this run."""
    import json

    from ..store import GENERATED_LOG

    target = str(run_dir.resolve())
    videos = {p: p.with_suffix(".mp4") for p in run_dir.parent.glob("*.json")}  # sidecar -> its video
    try:
        for line in (run_dir / GENERATED_LOG).read_text().splitlines():
            try:
                entry = json.loads(line)
                sidecar = Path(entry["sidecar"])
                videos[sidecar] = Path(entry.get("video") or sidecar.with_suffix(".mp4"))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut short by a crash
    except OSError:
        pass
    best = None
    for sidecar, video in videos.items():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or (meta.get("run") or {}).get("path") != target:
            continue
        written = (meta.get("output") or {}).get("path")  # where generate wrote it (any extension's case)
        video = Path(written) if isinstance(written, str) and Path(written).exists() else video
        if video.exists():
            if best is None or video.stat().st_mtime > best.stat().st_mtime:
                best = video
    return best


def make_show(run_dir: Path, out_dir: Path, n_frames: int = 4, tile_width: int = 320, video: bool = True,
              max_video_frames: int = 0, generated: Path | None = None, columns: int = 4) -> dict:
    """Write ``show.png`` (+ ``show.mp4``) into ``out_dir``; returns their paths and the panels shown.

    ``generated``: a generated video of this run to show beside the object removal (default: the
    newest one `find_generated` finds).
    """
    import numpy as np

    from ..errors import BadInputError
    from ..stages import frames
    from ..video import write_image, write_video

    run_dir = Path(run_dir)
    generated = Path(generated) if generated is not None else find_generated(run_dir)
    if generated is not None and not generated.exists():
        raise BadInputError(f"generated video not found: {generated}", "pass the .mp4 that `hoi generate` wrote")
    st = _Stages(run_dir, generated)
    if frames.NAME not in st.names:
        raise BadInputError(f"{run_dir} has no complete 00_frames", "run `hoi preprocess` on the clip first")
    meta = st.run.read(frames).meta
    T = int(meta["n_frames"])
    W, H = int(meta.get("width") or 0), int(meta.get("height") or 0)
    if W <= 0 or H <= 0:
        H, W = st.frame(0).shape[:2]
    tile_w = max(64, int(tile_width))
    tile_h = max(32, int(round(tile_w * H / W)))
    picks = sorted(set(np.linspace(0, T - 1, min(n_frames, T)).round().astype(int).tolist()))
    # contact sheet: one labelled column per panel, one row per picked frame (its index on the left)
    sheet_w = min(tile_w, max(200, 2000 // len(st.names)))  # a sheet about 2000 px wide at most
    sheet_h = max(32, int(round(sheet_w * H / W)))
    side = 44
    header = np.concatenate([np.full((LABEL_H, side, 3), 24, np.uint8)]
                            + [_label_bar(sheet_w, TITLES.get(n, n)) for n in st.names], axis=1)
    rows = [header]
    for t in picks:
        idx = _label_bar(side, f"t={t}")
        left = np.concatenate([idx, np.full((sheet_h - LABEL_H, side, 3), 24, np.uint8)], axis=0)
        rows.append(np.concatenate([left] + [st.tile(n, t, sheet_w, sheet_h) for n in st.names], axis=1))
    sheet = np.concatenate(rows, axis=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_image(out_dir / "show.png", sheet)
    result = {"sheet": str(out_dir / "show.png"), "stages": st.names, "frames": picks,
              "generated": str(generated) if generated else None}
    if video:
        last = T if max_video_frames <= 0 else min(T, max_video_frames)
        cols = max(1, min(columns, len(st.names)))
        write_video(out_dir / "show.mp4", (st.grid(t, T, cols, tile_w, tile_h) for t in range(last)),
                    float(meta.get("fps") or 10.0))
        result["video"] = str(out_dir / "show.mp4")
    return result


def show_command(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="a run folder (runs/<clip-id>)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output folder (default: RUN/show)")] = None,
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, help="rows of the contact sheet")] = 4,
    tile_width: Annotated[int, typer.Option(help="width of one panel in the video, px")] = 320,
    columns: Annotated[int, typer.Option(min=1, help="panels per row in the video")] = 4,
    generated: Annotated[Path | None, typer.Option(
        "--generated", "-g", help="a generated video of this run (default: the newest `hoi generate` made from it)")] = None,
    video: Annotated[bool, typer.Option("--video/--no-video", help="also write the grid video")] = True,
    max_video_frames: Annotated[int, typer.Option(help="0 = all frames")] = 0,
    fmt: FormatOption = Format.text,
) -> None:
    """Contact sheet (PNG) and a grid video of every stage's outputs, to check a run at a glance."""
    import json
    import sys

    try:
        res = make_show(run, out or run / "show", frames, tile_width, video, max_video_frames, generated, columns)
    except Exception as exc:
        fail(exc, fmt)
    if fmt == Format.json:
        print(f"panels: {', '.join(res['stages'])}", file=sys.stderr)
        print(json.dumps(res))
        return
    for key in ("sheet", "video", "generated"):
        if res.get(key):
            print(f"{key:>9}: {res[key]}")
    print(f"{'panels':>9}: {', '.join(res['stages'])}")
    print(f"{'frames':>9}: {', '.join(map(str, res['frames']))}")
