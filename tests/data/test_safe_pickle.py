import collections
import os
import pickle

import numpy as np
import pytest

from cnnframe.data.safe_pickle import safe_loads


class RunsCode:
    """Unpickling this with plain pickle would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalsCode:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_plain_batch_round_trips(protocol):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    batch = {b"data": data, b"labels": [3, 7], b"batch_label": b"training batch 1 of 5",
             b"filenames": [b"a.png", b"b.png"], "extra": (1.5, None, True, "text")}
    out = safe_loads(pickle.dumps(batch, protocol=protocol))
    assert out.keys() == batch.keys()
    np.testing.assert_array_equal(out[b"data"], data)
    assert out[b"data"].dtype == np.uint8 and out[b"data"].flags.writeable
    assert out[b"labels"] == [3, 7] and out[b"filenames"] == [b"a.png", b"b.png"]
    assert out["extra"] == (1.5, None, True, "text")


def test_code_running_pickle_is_refused_before_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": RunsCode(marker), b"labels": []})
    with pytest.raises(pickle.UnpicklingError, match="system"):
        safe_loads(payload)
    assert not marker.exists()
    # sanity check of the test itself: the plain unpickler would have run the command
    pickle.loads(payload)
    assert marker.exists()


@pytest.mark.parametrize("obj", [EvalsCode(), collections.OrderedDict(a=1), {1, 2},
                                 np.array([1, "a"], dtype=object)],
                         ids=["eval", "ordereddict", "set-of-code-free-type", "object-array"])
def test_disallowed_values_are_refused(obj):
    if isinstance(obj, set):  # sets are builtin opcodes at protocol >= 4, refused afterwards
        with pytest.raises(pickle.UnpicklingError, match="set"):
            safe_loads(pickle.dumps(obj, protocol=4))
        return
    with pytest.raises(pickle.UnpicklingError):
        safe_loads(pickle.dumps(obj))


def test_array_subclass_is_refused():
    with pytest.raises(pickle.UnpicklingError):
        safe_loads(pickle.dumps(np.ma.masked_array([1, 2, 3]), protocol=2))


@pytest.mark.parametrize("cut", [1, 10, 100, -1])
def test_truncated_pickle_raises_unpickling_error(cut):
    data = pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 4}, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        safe_loads(data[:cut])


def shared_nesting(width, depth):
    """A list nesting `depth` levels, each holding `width` references to the one list below.

    Its pickle is a few hundred bytes, but the tree it describes has width**depth leaves.
    """
    inner = []
    for _ in range(depth):
        inner = [inner] * width
    return inner


@pytest.mark.parametrize("width, depth", [(30, 5), (60, 6), (2, 19)])
def test_shared_references_are_checked_once(width, depth):
    # before the check remembered what it had visited, (30, 5) took 20 s and (60, 6) hours
    data = pickle.dumps(shared_nesting(width, depth), protocol=2)
    assert len(data) < 1000
    out = safe_loads(data)
    for _ in range(depth):
        assert len(out) == width and all(item is out[0] for item in out)
        out = out[0]
    assert out == []


def test_shared_reference_to_a_disallowed_value_is_still_refused():
    data = pickle.dumps([[1, 2]] * 3 + [{"a": [EvalsCode()]}])
    with pytest.raises(pickle.UnpicklingError, match="eval"):
        safe_loads(data)


def test_cyclic_list_is_accepted_without_looping():
    cycle = [1]
    cycle.append(cycle)
    out = safe_loads(pickle.dumps(cycle, protocol=2))
    assert out[0] == 1 and out[1] is out


@pytest.mark.parametrize("max_objects, ok", [(101, True), (100, False)])
def test_object_cap(max_objects, ok):
    data = pickle.dumps([0] * 100, protocol=2)  # the list itself and its 100 entries: 101 values
    if ok:
        assert safe_loads(data, max_objects=max_objects) == [0] * 100
    else:
        with pytest.raises(pickle.UnpicklingError, match="more than 100 values"):
            safe_loads(data, max_objects=max_objects)


def test_too_deep_nesting_is_refused():
    with pytest.raises(pickle.UnpicklingError, match="nesting deeper than 20"):
        safe_loads(pickle.dumps(shared_nesting(1, 25), protocol=2))
