"""Short clips: a clip of fewer frames than the detector's minimum track lengths keeps its hands.

Before the minimum lengths were capped at the clip length, 6-frame prefixes of InterDyn 125021,
137875 and 176110 gave "no hand found" (no track can last 8 frames in 6); with the cap each has a
hand in all 6 frames. Measured over all 12 InterDyn clips: 10 of 12 six-frame prefixes get hands
in every frame (6 before); 204076 and 33576 get none either way.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.realdata]


@pytest.mark.parametrize("clip_id", ["125021", "176110"])
def test_six_frame_clip_keeps_its_hands(shared_data, clip_id):
    from hoi_cli.detect.hands import detect_hands
    from hoi_cli.video import read_video

    path = shared_data / "interdyn" / clip_id / "video.webm"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    frames, _ = read_video(path)
    hands = detect_hands(frames[:6])
    assert np.isfinite(hands["hand_score"]).any(axis=1).sum() == 6
