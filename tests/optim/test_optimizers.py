"""Optimizers against independent re-implementations of the published update rules,
in-place updates without per-step allocation, and exact resume from a state_dict."""
import tracemalloc

import numpy as np
import pytest

from cnnframe.optim import SGD, Adam, AdamW, Optimizer


class Source:
    """Stand-in for a Model/Layer: `params`/`grads` dicts and a least-squares problem
    loss = mean((X @ W.T + b - Y)^2) over a linear layer named "fc", plus a scale
    parameter "bn1.weight" entering a quadratic term."""

    def __init__(self, dtype=np.float64, seed=0, n=16, fan_in=5, fan_out=3, fresh_grads=False):
        r = np.random.default_rng(seed)
        self.x = r.normal(size=(n, fan_in)).astype(dtype)
        self.y = r.normal(size=(n, fan_out)).astype(dtype)
        self.params = {"fc.weight": r.normal(size=(fan_out, fan_in)).astype(dtype),
                       "fc.bias": r.normal(size=fan_out).astype(dtype),
                       "bn1.weight": r.normal(size=fan_out).astype(dtype) + 1}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.fresh_grads = fresh_grads   # replace the grad arrays instead of writing into them

    def backward(self, params=None):
        """Fill (or replace) self.grads for the current params; returns the loss."""
        p = self.params if params is None else params
        w, b, s = p["fc.weight"], p["fc.bias"], p["bn1.weight"]
        r = self.x @ w.T + b - self.y
        n = r.size
        g = {"fc.weight": 2.0 / n * r.T @ self.x, "fc.bias": 2.0 / n * r.sum(axis=0),
             "bn1.weight": 3.0 * (s - 0.5)}
        grads = {k: v.astype(w.dtype) for k, v in g.items()}
        if params is not None:
            return grads
        if self.fresh_grads:
            self.grads = grads
        else:
            for k, v in grads.items():
                self.grads[k][...] = v
        return float(np.mean(r ** 2))


# ---- independent reference implementations (plain formulas, fresh arrays each step) ----
# PyTorch's documented algorithms (torch.optim.SGD / Adam / AdamW docs, "Algorithm" boxes):
#   SGD:   g += wd*p; if mu: b = g (t=1) else mu*b + (1-tau)*g; g = g + mu*b (nesterov) else b;
#          p -= lr*g
#   Adam:  g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; mh = m/(1-b1^t);
#          vh = v/(1-b2^t) (amsgrad: vmax = max(vmax, vh) -- same as max over v since 1-b2^t
#          grows, PyTorch keeps max over raw v); p -= lr*mh/(sqrt(vh)+eps)
#   AdamW: p *= 1 - lr*wd, then the Adam step with the raw gradient.
def reference_sgd(params, grad_fn, steps, lr, momentum=0.0, nesterov=False, wd=0.0,
                  dampening=0.0, no_decay=()):
    params = {k: v.astype(np.float64) for k, v in params.items()}
    bufs = {}
    out = []
    for t in range(1, steps + 1):
        grads = grad_fn(params)
        new = {}
        for k, p in params.items():
            g = grads[k].astype(np.float64)
            if wd and k not in no_decay:
                g = g + wd * p
            if momentum:
                bufs[k] = g.copy() if t == 1 else momentum * bufs[k] + (1 - dampening) * g
                g = g + momentum * bufs[k] if nesterov else bufs[k]
            new[k] = p - lr * g
        params = new
        out.append(params)
    return out


def reference_adam(params, grad_fn, steps, lr, betas=(0.9, 0.999), eps=1e-8, wd=0.0,
                   decoupled=False, amsgrad=False):
    b1, b2 = betas
    params = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    vmax = {k: np.zeros_like(p) for k, p in params.items()}
    out = []
    for t in range(1, steps + 1):
        grads = grad_fn(params)
        new = {}
        for k, p in params.items():
            g = grads[k].astype(np.float64)
            if wd and decoupled:
                p = p * (1 - lr * wd)
            elif wd:
                g = g + wd * p
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            vmax[k] = np.maximum(vmax[k], v[k])
            m_hat = m[k] / (1 - b1 ** t)
            v_hat = (vmax[k] if amsgrad else v[k]) / (1 - b2 ** t)
            new[k] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        params = new
        out.append(params)
    return out


SGD_CASES = [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True),
             dict(lr=0.05, momentum=0.8, weight_decay=0.1),
             dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
             dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.01)]
ADAM_CASES = [dict(lr=0.05), dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6),
              dict(lr=0.02, weight_decay=0.1), dict(lr=0.02, amsgrad=True, weight_decay=0.05)]


def run(opt_factory, steps, dtype=np.float64, fresh_grads=False):
    src = Source(dtype=dtype, fresh_grads=fresh_grads)
    start = {k: v.copy() for k, v in src.params.items()}
    opt = opt_factory(src)
    traj = []
    for _ in range(steps):
        src.backward()
        opt.step()
        traj.append({k: v.copy() for k, v in src.params.items()})
    return src, start, traj


def assert_trajectory_close(traj, ref, rtol, atol):
    assert len(traj) == len(ref)
    for t, (a, b) in enumerate(zip(traj, ref)):
        for k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=f"step {t + 1}, {k}")


@pytest.mark.parametrize("kw", SGD_CASES, ids=str)
@pytest.mark.parametrize("fresh_grads", [False, True])
def test_sgd_matches_reference(kw, fresh_grads):
    src, start, traj = run(lambda s: SGD(s, **kw), 40, fresh_grads=fresh_grads)
    ref = reference_sgd(start, src.backward, 40, kw["lr"], kw.get("momentum", 0.0),
                        kw.get("nesterov", False), kw.get("weight_decay", 0.0),
                        kw.get("dampening", 0.0))
    assert_trajectory_close(traj, ref, rtol=1e-11, atol=1e-13)
    assert not np.allclose(traj[-1]["fc.weight"], start["fc.weight"])


@pytest.mark.parametrize("kw", ADAM_CASES, ids=str)
@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_adam_and_adamw_match_reference(cls, kw):
    src, start, traj = run(lambda s: cls(s, **kw), 40)
    ref = reference_adam(start, src.backward, 40, kw["lr"], kw.get("betas", (0.9, 0.999)),
                         kw.get("eps", 1e-8), kw.get("weight_decay", 0.0 if cls is Adam else 1e-2),
                         decoupled=cls is AdamW, amsgrad=kw.get("amsgrad", False))
    assert_trajectory_close(traj, ref, rtol=1e-10, atol=1e-12)


def test_adamw_decay_is_decoupled_and_adam_decay_is_not():
    """With zero gradients AdamW only shrinks p by (1 - lr*wd) per step; Adam's L2 term
    instead goes through the moment estimates (a normalised step of up to lr)."""
    src = Source()
    p0 = src.params["fc.weight"].copy()
    opt = AdamW(src, lr=0.01, weight_decay=0.5)
    for _ in range(10):
        opt.step()                           # grads stay zero
    np.testing.assert_allclose(src.params["fc.weight"], p0 * (1 - 0.01 * 0.5) ** 10, rtol=1e-13)
    src2 = Source()
    opt2 = Adam(src2, lr=0.01, weight_decay=0.5)
    for _ in range(10):
        opt2.step()
    zero = lambda params: {k: np.zeros_like(v) for k, v in params.items()}  # noqa: E731
    ref = reference_adam(Source().params, zero, 10, lr=0.01, wd=0.5)[-1]["fc.weight"]
    np.testing.assert_allclose(src2.params["fc.weight"], ref, rtol=1e-12)
    assert not np.allclose(src2.params["fc.weight"], src.params["fc.weight"], rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factory", [lambda s: SGD(s, lr=0.05, momentum=0.9, nesterov=True,
                                                   weight_decay=1e-3),
                                     lambda s: Adam(s, lr=0.01, weight_decay=1e-3),
                                     lambda s: AdamW(s, lr=0.01, amsgrad=True)])
def test_updates_in_place_and_keep_dtype(dtype, factory):
    src = Source(dtype=dtype)
    objects = {k: v for k, v in src.params.items()}
    view = src.params["fc.weight"][0]            # a view sees in-place updates
    before = view.copy()
    opt = factory(src)
    losses = []
    for _ in range(60):
        losses.append(src.backward())
        opt.step()
    for k, v in src.params.items():
        assert v is objects[k] and v.dtype == dtype
    assert not np.array_equal(view, before)
    assert losses[-1] < 0.8 * losses[0]


def test_float32_run_tracks_float64_reference():
    src, start, traj = run(lambda s: Adam(s, lr=0.01), 30, dtype=np.float32)
    ref = reference_adam(start, Source(dtype=np.float64).backward, 30, 0.01)
    assert_trajectory_close(traj, ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("factory", [lambda s: SGD(s, lr=0.01, momentum=0.9, nesterov=True,
                                                   weight_decay=1e-4),
                                     lambda s: SGD(s, lr=0.01, momentum=0.9, dampening=0.1),
                                     lambda s: SGD(s, lr=0.01),
                                     lambda s: Adam(s, weight_decay=1e-4, amsgrad=True),
                                     lambda s: AdamW(s)])
def test_steps_after_the_first_allocate_nothing_param_sized(factory):
    class Big:
        def __init__(self):
            r = np.random.default_rng(0)
            self.params = {"a.weight": r.normal(size=(200, 500)), "a.bias": r.normal(size=500)}
            self.grads = {k: r.normal(size=v.shape) for k, v in self.params.items()}

    src = Big()
    opt = factory(src)
    opt.step()                                   # allocates state and scratch
    tracemalloc.start()
    try:
        for _ in range(3):
            opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    param_bytes = src.params["a.weight"].nbytes   # 800 kB
    assert peak < param_bytes / 20, f"step() allocated {peak} bytes"


def state_is_plain(d):
    return all(isinstance(v, (np.ndarray, int, float, bool)) for v in d.values())


@pytest.mark.parametrize("factory", [lambda s: SGD(s, lr=0.05, momentum=0.9, nesterov=True,
                                                   weight_decay=1e-2),
                                     lambda s: Adam(s, lr=0.02, amsgrad=True),
                                     lambda s: AdamW(s, lr=0.02, no_decay=("bias",))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_resumes_bit_identically(tmp_path, factory, dtype):
    steps, split = 30, 13
    src_a = Source(dtype=dtype)
    opt_a = factory(src_a)
    for _ in range(steps):
        src_a.backward()
        opt_a.step()

    src_b = Source(dtype=dtype)
    opt_b = factory(src_b)
    for _ in range(split):
        src_b.backward()
        opt_b.step()
    state = opt_b.state_dict()
    assert state_is_plain(state)
    np.savez(tmp_path / "opt.npz", **state)
    params = {k: v.copy() for k, v in src_b.params.items()}

    # a new process: fresh source with the saved weights, fresh optimizer, changed lr
    src_c = Source(dtype=dtype)
    for k, v in params.items():
        src_c.params[k][...] = v
    opt_c = factory(src_c)
    opt_c.lr = 123.0
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        opt_c.load_state_dict(dict(f))
    assert opt_c.lr == opt_b.lr and opt_c.step_count == split
    for _ in range(steps - split):
        src_c.backward()
        opt_c.step()
    for k in src_a.params:
        assert np.array_equal(src_a.params[k], src_c.params[k]), k


def test_state_dict_holds_copies_and_expected_keys():
    src = Source()
    opt = Adam(src)
    src.backward()
    opt.step()
    d = opt.state_dict()
    assert {"lr", "step_count", "beta1", "beta2", "eps", "weight_decay", "amsgrad"} <= set(d)
    assert {"exp_avg/fc.weight", "exp_avg_sq/fc.bias", "step/bn1.weight"} <= set(d)
    d["exp_avg/fc.weight"][...] = 99.0
    assert not np.any(opt.state["fc.weight"]["exp_avg"] == 99.0)


def test_load_state_dict_errors():
    src = Source()
    opt = SGD(src, lr=0.1, momentum=0.9)
    src.backward()
    opt.step()
    good = opt.state_dict()
    with pytest.raises(ValueError, match="unknown key 'velocity/fc.bias'.*valid keys"):
        opt.load_state_dict({**good, "velocity/fc.bias": np.zeros(3)})
    with pytest.raises(ValueError, match="'conv9.weight'.*does not have"):
        opt.load_state_dict({**good, "momentum_buffer/conv9.weight": np.zeros(3),
                             "step/conv9.weight": 1})
    with pytest.raises(ValueError, match=r"shape \(4,\).*shape \(3,\)"):
        opt.load_state_dict({**good, "momentum_buffer/fc.bias": np.zeros(4)})
    with pytest.raises(ValueError, match="missing.*'lr'"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "lr"})
    with pytest.raises(ValueError, match="missing momentum_buffer/fc.bias"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "momentum_buffer/fc.bias"})
    with pytest.raises(ValueError, match="'lr' must be a number"):
        opt.load_state_dict({**good, "lr": np.zeros(3)})
    opt.load_state_dict(good)                     # still loads after the failures


def test_load_restores_hyperparameters_and_buffers_follow_them():
    src = Source()
    opt = SGD(src, lr=0.1, momentum=0.9, nesterov=True)
    src.backward()
    opt.step()
    fresh = SGD(Source(), lr=0.3)                 # no momentum: no buffers yet
    fresh.load_state_dict(opt.state_dict())
    assert (fresh.momentum, fresh.nesterov, fresh.lr) == (0.9, True, 0.1)
    np.testing.assert_array_equal(fresh.state["fc.weight"]["momentum_buffer"],
                                  opt.state["fc.weight"]["momentum_buffer"])


def test_missing_gradient_raises_or_is_skipped():
    src = Source()
    del src.grads["bn1.weight"]
    src.grads["fc.bias"] = None
    with pytest.raises(KeyError, match="'fc.bias'.*skip_missing"):
        SGD(src, lr=0.1).step()
    opt = Adam(src, lr=0.1, skip_missing=True)
    frozen = {k: src.params[k].copy() for k in ("bn1.weight", "fc.bias")}
    src.grads["fc.weight"][...] = 1.0
    w0 = src.params["fc.weight"].copy()
    opt.step()
    for k, v in frozen.items():
        assert np.array_equal(src.params[k], v)
        assert k not in opt.state
    np.testing.assert_allclose(src.params["fc.weight"], w0 - 0.1, rtol=1e-6)


def test_gradient_shape_mismatch_and_bad_source():
    src = Source()
    src.grads["fc.bias"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"'fc.bias'.*\(7,\).*\(3,\)"):
        SGD(src).step()
    with pytest.raises(TypeError, match="params"):
        SGD(object())


@pytest.mark.parametrize("no_decay,decayed", [
    ((), {"fc.weight", "fc.bias", "bn1.weight"}),
    (("bias",), {"fc.weight", "bn1.weight"}),
    (("bias", "bn*.weight"), {"fc.weight"}),
    ("fc.weight", {"fc.bias", "bn1.weight"}),
])
@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_no_decay_patterns(cls, no_decay, decayed):
    src = Source()
    start = {k: v.copy() for k, v in src.params.items()}
    opt = cls(src, lr=0.1, weight_decay=0.5, no_decay=no_decay)   # gradients stay zero
    opt.step()
    for k in src.params:
        moved = not np.array_equal(src.params[k], start[k])
        assert moved == (k in decayed), k
        assert opt.decays(k) == (k in decayed)


def test_lr_is_settable_and_used():
    src = Source()
    opt = SGD(src, lr=0.1)
    src.grads["fc.bias"][...] = 1.0
    b0 = src.params["fc.bias"].copy()
    opt.lr = 0.25
    opt.step()
    np.testing.assert_allclose(src.params["fc.bias"], b0 - 0.25)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1
    with pytest.raises(ValueError, match="lr"):
        opt.lr = float("nan")


def test_state_follows_a_dtype_change_of_the_parameters():
    src = Source(dtype=np.float32)
    opt = Adam(src, lr=0.01)
    src.backward()
    opt.step()
    src.params = {k: v.astype(np.float64) for k, v in src.params.items()}   # like model.astype
    src.grads = {k: v.astype(np.float64) for k, v in src.grads.items()}
    src.backward()
    opt.step()
    assert opt.state["fc.weight"]["exp_avg"].dtype == np.float64
    assert src.params["fc.weight"].dtype == np.float64


@pytest.mark.parametrize("ctor,match", [
    (lambda s: SGD(s, momentum=1.0), "momentum"),
    (lambda s: SGD(s, momentum=-0.1), "momentum"),
    (lambda s: SGD(s, nesterov=True), "nesterov"),
    (lambda s: SGD(s, momentum=0.9, nesterov=True, dampening=0.1), "nesterov"),
    (lambda s: SGD(s, weight_decay=-1), "weight_decay"),
    (lambda s: SGD(s, lr=-0.1), "lr"),
    (lambda s: Adam(s, betas=(0.9, 1.0)), r"betas\[1\]"),
    (lambda s: Adam(s, betas=(0.9,)), "betas"),
    (lambda s: Adam(s, eps=0.0), "eps"),
    (lambda s: AdamW(s, weight_decay=float("nan")), "weight_decay"),
])
def test_hyperparameter_validation(ctor, match):
    with pytest.raises(ValueError, match=match):
        ctor(Source())


def test_zero_grad_and_base_class():
    src = Source()
    src.backward()
    opt = SGD(src)
    opt.zero_grad()
    assert all(not np.any(g) for g in src.grads.values())
    assert isinstance(opt, Optimizer)
    assert "SGD(lr=0.01" in repr(opt)
