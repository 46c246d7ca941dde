"""The training controls a training config asks for, as `Trainer` keyword arguments.

`cnnframe train` builds the model, the optimizer (gradient clipping, parameter groups
and Lookahead are optimizer settings: `cnnframe.optim.build_optimizer`) and the schedule
(ReduceLROnPlateau: ``type = "plateau"``), then calls :func:`build_controls` for the
rest: ``freeze``, ``[ema]``, ``[early_stopping]`` and ``[checkpoint] keep_best``.
"""
from cnnframe.optim.ema import ExponentialMovingAverage
from cnnframe.train.callbacks import EarlyStopping

__all__ = ["build_controls"]


def build_controls(cfg, model):
    """Apply ``freeze`` to `model` and build the EMA, callbacks and keep_best of a config.

    Parameters
    ----------
    cfg : dict
        A validated training config (`cnnframe.train.validate_config`).
    model : cnnframe.Model

    Returns
    -------
    dict
        Keyword arguments for `cnnframe.train.Trainer`: ``callbacks``, and when asked
        ``ema``, ``evaluate_ema``, ``save_ema``, ``keep_best``.

    Raises
    ------
    ValueError
        A freeze pattern selecting no parameter, or a bad [ema] / [early_stopping] value
        (each naming the key).
    """
    if cfg.get("freeze"):
        model.freeze(*cfg["freeze"])
    kw = {"callbacks": []}
    if cfg.get("ema") is not None:
        ema = dict(cfg["ema"])
        kw["evaluate_ema"] = ema.pop("evaluate", True)
        kw["save_ema"] = ema.pop("save", False)
        kw["ema"] = ExponentialMovingAverage(model, **ema)
    if cfg.get("early_stopping") is not None:
        kw["callbacks"].append(EarlyStopping(**cfg["early_stopping"]))
    keep_best = cfg.get("checkpoint", {}).get("keep_best")
    if keep_best is not None:
        kw["keep_best"] = dict(keep_best)
    return kw
