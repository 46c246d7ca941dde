"""Weight-derived data kept between conv calls while the weight does not change.

Winograd's transformed weights and the direct kernel's packed weights cost more to build
than a whole batch-1 convolution.  A `WeightCache` keeps them, for one weight array, as
long as that array holds exactly the bytes they were built from.

The rule, and why it is correct by construction: every lookup compares the weight, bit for
bit, with a private copy taken when the entries were built.  Any change, however it was
made (an optimizer step, ``load_state_dict``, ``reset_parameters``, an EMA swap, a user's
``layer.params["weight"][...] = ...``, a dtype change), is a miss and the data are rebuilt
from the weight as it is now, so a cached call returns exactly what an uncached one would.
No writer has to tell the cache anything.  The comparison reads the weight and the copy
once (30 us for a 128 x 64 x 3 x 3 float32 weight on the AVX2 test machine, against 170 us
to pack it for the direct kernel and 110 / 195 us to transform it for Winograd F(2x2) /
F(4x4), medians of 200 calls); layers use a cache only in inference passes
(``training=False``), so a training step, whose weights change every time, never pays for it.
"""
import threading

import numpy as np

from cnnframe.functional._workspace import scratch


class WeightCache:
    """Data derived from one conv weight (packed, transformed), valid while it is unchanged.

    ``conv2d(..., weight_cache=cache)`` keeps what its algorithm prepares from the weight
    here; a layer holds one per weight and passes it in inference passes.  Entries are
    keyed by what was prepared (algorithm, tile, micro-kernel); at most `MAX_ENTRIES` are
    kept (different batch sizes may take different algorithms).

    Attributes
    ----------
    hits, misses : int
        Lookups that found their entry, and lookups that built it.

    Copies (``copy.deepcopy``, pickling) start empty.  One cache may be shared by several
    threads: lookups hold a lock.
    """

    MAX_ENTRIES = 4

    def __init__(self):
        self._source = None    # a private copy of the weight the entries were built from
        self._entries = {}     # key -> prepared data
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def lookup(self, weight, key, build):
        """The entry `key` for `weight`: ``build()``'s result, built now if the cache holds
        none for the weight as it is now.  `weight` is a C-contiguous ndarray."""
        with self._lock:
            if not self._holds(weight):
                self._entries.clear()
                self._source = weight.copy()
            data = self._entries.get(key)
            if data is not None:
                self.hits += 1
                return data
            self.misses += 1
            data = build()
            if len(self._entries) >= self.MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]   # the oldest
            self._entries[key] = data
            return data

    def _holds(self, weight):
        """True if the cache's copy has weight's shape, dtype and bytes (compared as unsigned
        integers: NaN payloads and the sign of zero count as changes)."""
        src = self._source
        if src is None or src.shape != weight.shape or src.dtype != weight.dtype:
            return False
        bits = np.dtype(f"u{weight.itemsize}")
        same = scratch("weight cache comparison", np.bool_, 1, weight.size).reshape(weight.shape)
        np.equal(src.view(bits), weight.view(bits), out=same)
        return bool(same.all())

    def clear(self):
        """Drop every entry (they are rebuilt on the next lookup)."""
        with self._lock:
            self._source = None
            self._entries.clear()

    def __len__(self):
        return len(self._entries)

    def __getstate__(self):   # copies start empty: the entries are derived data
        return {}

    def __setstate__(self, state):
        self.__init__()

    def __repr__(self):
        return f"WeightCache({len(self._entries)} entries, {self.hits} hits, {self.misses} misses)"
