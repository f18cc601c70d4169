"""The golden ratio, shared by the two golden-section searches (focus per patch, contrast per sweep)."""

GOLDEN_RATIO = (1.0 + 5.0**0.5) / 2.0
