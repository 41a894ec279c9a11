"""Generation: reference preparation, Re-HOLD's adaptive layout adjustment, and backends.

- `reference`: cut the object out of its image (alpha, or plain-background GrabCut), or out of
  a frame of the clip (self-reenactment); record its aspect ratio and size.
- `layout`: Re-HOLD's adaptive layout adjustment (contact, resize, hand shift, bottom alignment,
  temporal smoothing).
- `composite`: the weight-free backend (remove the source object, place the reference with the
  object's per-frame rotation and scale, hands in front per the depth order, colour harmonised).
- `batch`: many runs x references from a CSV.

Importing this package is cheap: OpenCV is imported inside the functions.
"""
