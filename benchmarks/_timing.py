"""The benchmarks' one timer: medians of interleaved repeats, each after a pause and a warm-up.

Every repeat calls each implementation in turn, so that all see the same machine load (on a
noisy shared machine the ratio within one repeat is steadier than either time alone).

Before each timed call comes a short pause and one untimed call.  PyTorch's and cnnframe's
OpenMP runtimes are separate libgomp copies whose idle threads spin for a while after each
parallel region; a kernel started meanwhile waits for a core (a scheduler time slice, ~8 ms
here), on either side.  The pause lets the other implementation's threads go idle; the untimed
call wakes this one's threads again (and fills its buffers and caches), as the layer before it
would in a training step.

    from _timing import interleaved_ms, median_ms   # benchmarks/ is on sys.path when run

`aligned_table` lays out the profiling scripts' plain-text tables.
"""
import statistics
import time

SETTLE_S = 0.01


def call_ms(fn):
    """Milliseconds one call of `fn` takes.

    `fn` may instead return its own timing in seconds (a float) to leave out set-up that must
    precede each call, e.g. a PyTorch backward that has to build its graph first.
    """
    t0 = time.perf_counter()
    inner = fn()
    return (inner if isinstance(inner, float) else time.perf_counter() - t0) * 1e3


def interleaved_ms(impls, repeats, settle_s=SETTLE_S, warm_each_repeat=True):
    """Milliseconds of every timed call, the implementations interleaved repeat by repeat.

    Parameters
    ----------
    impls : dict
        name -> a callable, or a tuple of callables that run in order as one step and are
        timed one by one (e.g. ``(forward, backward)``: a backward needs its forward first).
    repeats : int
        Timed calls of each implementation.
    settle_s : float
        Pause in seconds before each implementation's turn.
    warm_each_repeat : bool
        Make an untimed call before every timed one (default); False warms up only once,
        before the first repeat (for slow reference code timed alone).

    Returns
    -------
    dict
        name -> list of `repeats` milliseconds for a callable; for a tuple of callables, a
        tuple of such lists, one per callable.
    """
    steps = {name: fn if isinstance(fn, tuple) else (fn,) for name, fn in impls.items()}
    times = {name: tuple([] for _ in fns) for name, fns in steps.items()}
    for repeat in range(repeats):
        for name, fns in steps.items():
            time.sleep(settle_s)
            if warm_each_repeat or repeat == 0:
                for fn in fns:
                    fn()
            for fn, ms in zip(fns, times[name]):
                ms.append(call_ms(fn))
    return {name: ms if isinstance(impls[name], tuple) else ms[0] for name, ms in times.items()}


def median_ms(impls, repeats, settle_s=SETTLE_S, warm_each_repeat=True):
    """Median milliseconds of each implementation (a tuple of medians for a tuple of
    callables); the arguments are those of :func:`interleaved_ms`."""
    samples = interleaved_ms(impls, repeats, settle_s, warm_each_repeat)
    return {name: tuple(map(statistics.median, ms)) if isinstance(ms, tuple)
            else statistics.median(ms) for name, ms in samples.items()}


def aligned_table(rows, left):
    """Lines of a plain-text table: `rows` of strings (the first is the header, underlined
    with dashes), the first `left` columns left-aligned and the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i < left else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
