"""Rewrites of multi-node patterns into single ops before conversion.

Exporters before ONNX's Gelu op (opset 20) write GELU as
``x * 0.5 * (1 + erf(x / sqrt(2)))`` -- Div (or Mul by 1/sqrt(2)), Erf, Add, and two
Muls in either association.  :func:`fuse_gelu` replaces each such chain by one
``Gelu`` node, so it imports as a cnnframe ``gelu`` layer.
"""
import math

import numpy as np

from cnnframe.onnx._builder import Node

SQRT2 = math.sqrt(2.0)


def _consumers(nodes):
    users = {}
    for n in nodes:
        for i in n.inputs:
            users.setdefault(i, []).append(n)
    return users


def _scalar_value(name, constants):
    v = constants.get(name)
    if v is None or np.size(v) != 1:
        return None
    return float(np.asarray(v).reshape(()))


def _is(value, target):
    return value is not None and abs(value - target) <= 1e-4 * abs(target)


def _other(node, name):
    """The input of a two-input node that is not `name` (None if both or neither are)."""
    a, b = node.inputs[:2]
    if a == name and b != name:
        return b
    if b == name and a != name:
        return a
    return None


def fuse_gelu(nodes, constants, graph_outputs):
    """`nodes` with every erf-GELU chain replaced by a Gelu node.

    Parameters
    ----------
    nodes : list of Node
        In topological order.
    constants : dict
        Value name -> array, for initializers and Constant nodes (the scalars are read).
    graph_outputs : set of str
        Intermediate values of a chain must not be graph outputs.
    """
    users = _consumers(nodes)

    def only_user(value, op):
        us = users.get(value, [])
        if len(us) == 1 and us[0].op == op and value not in graph_outputs:
            return us[0]
        return None

    remove, replace = set(), {}
    for erf in nodes:
        if erf.op != "Erf":
            continue
        scaled = next((n for n in nodes if erf.inputs[0] in n.outputs), None)
        if scaled is None or scaled.op not in ("Div", "Mul") or len(users.get(
                erf.inputs[0], [])) != 1:
            continue
        x, factor_name = scaled.inputs[:2]
        if scaled.op == "Mul" and x in constants:  # (1 / sqrt(2)) * x
            x, factor_name = factor_name, x
        factor = _scalar_value(factor_name, constants)
        if not (_is(factor, SQRT2) if scaled.op == "Div" else _is(factor, 1 / SQRT2)):
            continue
        add = only_user(erf.outputs[0], "Add")
        if add is None or not _is(_scalar_value(_other(add, erf.outputs[0]), constants), 1.0):
            continue
        m1 = only_user(add.outputs[0], "Mul")
        if m1 is None:
            continue
        partner = _other(m1, add.outputs[0])
        chain = [scaled, erf, add, m1]
        if partner == x:                      # (x * (1 + erf)) * 0.5
            m2 = only_user(m1.outputs[0], "Mul")
            if m2 is None or not _is(_scalar_value(_other(m2, m1.outputs[0]), constants), 0.5):
                continue
            chain.append(m2)
        elif _is(_scalar_value(partner, constants), 0.5):   # ((1 + erf) * 0.5) * x
            m2 = only_user(m1.outputs[0], "Mul")
            if m2 is None or _other(m2, m1.outputs[0]) != x:
                continue
            chain.append(m2)
        else:                                 # (x * 0.5) * (1 + erf)
            half = next((n for n in nodes if partner in n.outputs), None)
            if (half is None or half.op != "Mul" or _other(half, x) is None
                    or not _is(_scalar_value(_other(half, x), constants), 0.5)
                    or len(users.get(partner, [])) != 1):
                continue
            chain.append(half)
        last = next(n for n in chain if n.outputs[0] not in
                    {i for c in chain for i in c.inputs})
        remove.update(id(n) for n in chain)
        replace[id(last)] = Node(last.name or erf.name, "Gelu", "", [x], [last.outputs[0]],
                                 {"approximate": "none"})
    out = []
    for n in nodes:
        if id(n) in replace:
            out.append(replace[id(n)])
        elif id(n) not in remove:
            out.append(n)
    return out
