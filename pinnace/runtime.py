"""Process-wide settings every pinnace component applies at start."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Make the cyclic garbage collector rare and cheap.

    Our objects are JSON trees without reference cycles, so reference
    counting frees them; but decoding thousands of objects (a LIST, a watch
    replay) trips the default generation-0 threshold of 700 allocations
    constantly, and each collection walks every young object. Profiling a
    10,000-pod Table showed most of its time spent in the collector. Freeze
    what start-up allocated (it lives forever) and collect far less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)
