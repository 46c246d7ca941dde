"""Gradient checking of layers, built-in or your own::

    from cnnframe.gradcheck import check_layer

    report = check_layer("conv2d", config={"in_channels": 3, "out_channels": 4,
                                           "kernel_size": 3}, input_shape=(2, 3, 6, 6))
    report.passed              # True
    print(report)              # per input/parameter errors, worst elements, likely causes
    report.raise_if_failed()   # GradcheckError (an AssertionError) with the report

How it works
------------
- The check runs on a **float64 copy of the very layer you pass**
  (``copy.deepcopy(layer).astype(float64)``: every attribute, parameter, buffer
  and the rng state), whatever the layer's own dtype; the layer itself is never
  modified.
- For K random Gaussian output projections ``v`` (or, for outputs of at most 64
  elements or ``mode="full"``, every output element: the exact Jacobian) it
  compares ``backward(v)`` -- the vector-Jacobian product -- with central
  differences ``v . (f(x + h e_i) - f(x - h e_i)) / 2h`` for every element ``i``
  of every input and parameter (at most ``max_elements`` random ones per array).
- An element fails when ``|analytic - numeric| > atol + rtol * |numeric|``.
- **Kinks** (ReLU at 0, max-pool ties, clipping): along each perturbed element
  the second difference ``|v . (f(x+h) - 2 f(x) + f(x-h))| / 2h`` is exactly the
  error a kink within ``h`` puts into the central difference (and tiny at smooth
  points).  Mismatches it explains are never reported as failures: those elements
  are moved off the kink and everything is recomputed (``max_attempts`` times);
  the few left are counted as skipped.  (Comparing estimates with ``h`` and
  ``h/2`` alone misses exact ties: both give the mean of the one-sided slopes.)
- **Failures get a likely cause** where one fits: off by a constant factor, sign
  flipped, kernel flipped, transposed, missing accumulation over the batch or
  over a fan-out, gradient wrt the wrong argument, backward reading a parameter
  flipped or transposed.
- **Structural checks**: ``output_shape()`` agrees with forward, float32 and
  float64 are preserved through forward and backward, ``grads`` has the keys and
  shapes of ``params``, neither forward nor backward modifies its inputs, eval
  mode is deterministic and leaves the buffers alone, the output is finite.
- **Config round trip** (``config_roundtrip``): the layer rebuilt with
  ``from_config(get_config())``, with the parameters, buffers and rng state
  copied over (what loading a saved model does), must give the same output,
  buffers, input gradients and ``grads`` as the layer itself; otherwise the check
  fails with "get_config() misses state that changes the layer: ..." naming what
  differs (and the plain attributes that differ).  A layer whose ``get_config()``
  or ``from_config()`` raises gets a note instead (the conformance suite's
  ``config_roundtrip`` check fails it).  Check a layer built on its own: a Model
  sets flags on its nodes (a batch norm fused with the ReLU after it) that are
  not config.

Protocol for stochastic layers
------------------------------
A layer that draws random numbers in ``forward`` (dropout, noise layers) takes
part in gradient checks by following two rules:

1. it sets the class attribute ``stochastic = True`` and keeps a numpy
   ``Generator`` in ``self.rng`` (created in ``__init__``/``reset_parameters``
   from its ``seed``), and
2. it draws **all** of its randomness in ``forward`` from ``self.rng`` (no
   ``np.random.*`` globals, no other generator, nothing random in ``backward``).

The checker saves ``layer.rng.bit_generator.state`` once and restores it before
*every* forward evaluation (and restores the buffers too), so each perturbed
evaluation sees the same mask as the one backward is checked against.  In eval
mode (``training=False``) a stochastic layer must be deterministic; the checker
verifies that without replaying the state.
"""
from cnnframe.gradcheck.check import (CheckResult, ElementError, GradcheckError,
                                      GradcheckReport, TargetResult, check_layer)
from cnnframe.gradcheck.numeric import copy_layer, find_kinks, numeric_gradient, push_off_kinks
from cnnframe.gradcheck.roundtrip import (MISSES_STATE, RebuildError,
                                          config_roundtrip_differences,
                                          describe_roundtrip_failure, rebuild_from_config)

__all__ = ["check_layer", "GradcheckReport", "GradcheckError", "TargetResult", "ElementError",
           "CheckResult", "copy_layer", "find_kinks", "numeric_gradient", "push_off_kinks",
           "MISSES_STATE", "RebuildError", "config_roundtrip_differences",
           "describe_roundtrip_failure", "rebuild_from_config"]
