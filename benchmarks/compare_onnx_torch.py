"""PyTorch -> torch.onnx.export -> cnnframe.onnx.load: do the imported models agree?

Two nets in eval mode, with batch-norm running statistics set away from their
defaults so that normalisation matters:

- resnet: a ResNet-style stem and residual blocks (one downsampling), max pooling,
  and a decoder head: a transposed conv and a nearest upsampling concatenated,
  then global average pooling and a linear classifier.
- mobilenet: MobileNetV2/V3-style inverted residuals (1x1 expand, depthwise 3x3,
  1x1 project, ReLU6, hardswish), a squeeze-and-excitation gate, nearest upsampling
  concatenated with a skip, dropout and a linear classifier.

Each is exported at several opsets, once as the exporter does by default (batch norm
folded into the convolutions) and once with constant folding off (BatchNormalization
nodes kept), imported, and run in float32 on the same batch.  The table gives the
largest absolute difference and that difference relative to the largest |output|.
The last column goes on: the imported model exported again by cnnframe (at the same
opset, or 17 for opsets below 13, which cnnframe does not write) and run by
onnxruntime: PyTorch -> ONNX -> cnnframe -> ONNX -> onnxruntime, relative to PyTorch.
Target: max rel err <= 1e-5 in both.

PyTorch is not a dependency of cnnframe: without it the script says so and exits 0.

    python benchmarks/compare_onnx_torch.py [--opsets 9,13,17] [--batch 4]
"""
import argparse
import os
import sys
import tempfile
import warnings

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - depends on the machine
    torch = None


def _bn(c):
    return nn.BatchNorm2d(c)


class BasicBlock(nn.Module if torch else object):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNetStyle(nn.Module if torch else object):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), _bn(16), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.up_t = nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)
        self.up_n = nn.Upsample(scale_factor=2, mode="nearest")
        self.mix = nn.Sequential(nn.Conv2d(16 + 32 + 16, 32, 3, 1, 1), _bn(32), nn.ReLU())
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        a = self.layer1(self.stem(x))
        b = self.layer2(a)
        y = self.mix(torch.cat([self.up_t(b), self.up_n(b), a], 1))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


class InvertedResidual(nn.Module if torch else object):
    def __init__(self, cin, cout, stride, expand, act):
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), _bn(mid), act(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), _bn(mid), act(),
            nn.Conv2d(mid, cout, 1, bias=False), _bn(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class SqueezeExcite(nn.Module if torch else object):
    def __init__(self, c):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))


class MobileNetStyle(nn.Module if torch else object):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), _bn(16), nn.ReLU6())
        self.block1 = InvertedResidual(16, 16, 1, 4, nn.ReLU6)
        self.block2 = InvertedResidual(16, 24, 2, 4, nn.Hardswish)
        self.se = SqueezeExcite(24)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Sequential(nn.Conv2d(24 + 16, 48, 1, bias=False), _bn(48), nn.Hardswish())
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(48, classes)

    def forward(self, x):
        a = self.block1(self.stem(x))
        b = self.se(self.block2(a))
        y = self.head(torch.cat([self.up(b), a], 1))
        y = nn.functional.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(self.drop(y))


def _randomise_batch_norms(net, seed):
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
    return net.eval()


def compare(net, x, opset, fold, folder):
    import onnx
    import onnxruntime as ort

    import cnnframe.onnx as connx
    from cnnframe.onnx.importer import load
    path = os.path.join(folder, f"net_{opset}_{int(fold)}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), path, opset_version=opset, dynamo=False,
                          do_constant_folding=fold, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}})
    ops = [n.op_type for n in onnx.load(path).graph.node]
    model = load(path)
    with torch.no_grad():
        want = net(x).numpy()
    got = model.forward(x.numpy(), training=False)
    err = float(np.abs(got - want).max())
    # and back out: cnnframe's export of the imported model, run by onnxruntime
    again = connx.export(model, os.path.join(folder, f"again_{opset}_{int(fold)}.onnx"),
                         opset=opset if opset >= connx.MIN_OPSET else connx.DEFAULT_OPSET)
    session = ort.InferenceSession(again, providers=["CPUExecutionProvider"])
    (input_name,) = model.inputs
    (via_onnx,) = session.run(None, {input_name: x.numpy()})
    scale = float(np.abs(want).max())
    return (err, err / scale, ops.count("BatchNormalization"), len(ops),
            float(np.abs(via_onnx - want).max()) / scale)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opsets", default="9,13,17",
                        help="comma-separated opsets to export with (default 9,13,17)")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args(argv)
    if torch is None:
        print("compare_onnx_torch: PyTorch is not installed (pip install torch); skipped")
        return 0
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    nets = {"resnet": _randomise_batch_norms(ResNetStyle(), 1),
            "mobilenet": _randomise_batch_norms(MobileNetStyle(), 2)}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, net in nets.items():
            for opset in (int(o) for o in args.opsets.split(",")):
                for fold in (True, False):
                    err, rel, n_bn, n_ops, rel_again = compare(net, x, opset, fold, folder)
                    rows.append((name, opset, "folded" if fold else "kept", n_bn, n_ops, err,
                                 rel, rel_again))
    print(f"{'net':<10} {'opset':>5} {'batch norm':>10} {'BN nodes':>8} {'nodes':>6} "
          f"{'max abs err':>12} {'max rel err':>12} {'re-exported':>12}")
    for name, opset, mode, n_bn, n_ops, err, rel, rel_again in rows:
        print(f"{name:<10} {opset:>5} {mode:>10} {n_bn:>8} {n_ops:>6} {err:>12.3e} "
              f"{rel:>12.3e} {rel_again:>12.3e}")
    worst = max(max(r[-2:]) for r in rows)
    print(f"worst relative error {worst:.3e} ({'within' if worst <= 1e-5 else 'ABOVE'} 1e-5)")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
