"""Coverage-guided fuzzing of cnnframe.functional and the layers with atheris (libFuzzer).

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/atheris_functional.py -max_total_time=60
    .venv/bin/python tests/fuzz/atheris_functional.py -atheris_runs=20000   # a fixed count

The fuzzer's bytes drive the same case generators as the hypothesis suite
(fuzz/cases.py for every functional op, built by fuzz/conv_pool_cases.py and
fuzz/norm_cases.py; fuzz/layer_cases.py for every layer).  A
contract violation raises, which libFuzzer reports with the crashing input (saved as
crash-*); a segfault or abort in a kernel kills the process, which libFuzzer also
detects and reports (run it from a shell or a subprocess, never inside pytest).  At
every 10,000 cases it prints how many passed and their outcomes.
"""
import collections
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for `fuzz.cases`

import atheris  # noqa: E402

with atheris.instrument_imports(include=["cnnframe"]):
    import cnnframe.functional  # noqa: F401,E402
    import cnnframe.layers  # noqa: F401,E402
    from fuzz.cases import run_case  # noqa: E402
    from fuzz.layer_cases import run_layer_case  # noqa: E402

warnings.simplefilter("ignore")
OUTCOMES = collections.Counter()


class ProviderChooser:
    """Chooser over atheris' FuzzedDataProvider (ints from the fuzzer's bytes)."""

    def __init__(self, data):
        self.fdp = atheris.FuzzedDataProvider(data)

    def int(self, lo, hi):
        return self.fdp.ConsumeIntInRange(lo, hi)

    def choice(self, seq):
        return seq[self.fdp.ConsumeIntInRange(0, len(seq) - 1)]

    def bool(self):
        return self.fdp.ConsumeBool()


def test_one_input(data):
    c = ProviderChooser(data)
    outcome = run_case(c) if c.bool() else run_layer_case(c)
    OUTCOMES[outcome.split(":")[0]] += 1
    total = sum(OUTCOMES.values())
    if total % 10000 == 0:  # libFuzzer leaves with _exit: report as we go
        detail = ", ".join(f"{k} {v}" for k, v in OUTCOMES.most_common())
        print(f"atheris: {total} cases passed the contract ({detail})", flush=True)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
