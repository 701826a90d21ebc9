"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) read into plain torch.

The ``.dat`` file shipped by ``face_recognition_models`` is parsed here (no dlib needed to read it) and
run as a torch module with the **same weights**: nothing is downloaded, nothing new is shipped. dlib's
own wheel (``dlib-bin``) is built without BLAS, so one descriptor costs ~100 ms of CPU there; the torch
copy runs the same arithmetic through oneDNN/MKL.

The file format (facts from dlib's ``serialize.h``, ``float_details.h``, ``dnn/core.h``, ``layers.h``,
``loss.h``, ``input.h``, ``cuda/tensor.h``):

- signed/unsigned ints: one control byte (low nibble = number of bytes that follow, 0x80 = negative),
  then the magnitude little-endian; bool: the ASCII byte ``'0'``/``'1'``; string: int length + bytes;
  float/double: int64 mantissa + int16 exponent (value = mantissa * 2**exponent).
- tensor: int version (2), four int64 dims (n, k, nr, nc), then n*k*nr*nc little-endian float32.
  alias_tensor (a view into a layer's ``params``): int version (1) + four dims, no data.
- a network is written outermost first: ``add_loss_layer`` = version, loss details, subnet;
  ``add_layer`` = version, subnet, *then* the layer's details and a few flags/tensors;
  ``add_tag_layer`` / ``add_skip_layer`` = version, subnet. So the file holds every outer layer's
  version first, then the input layer, then the layers' details from the innermost out. Which kind
  each position holds comes from the network's C++ type (``anet_type`` of dlib's
  ``dnn_face_recognition_ex.cpp``), written out below as :func:`anet_structure`; every details block
  starts with its layer's name (``con_4``, ``affine_``, ``relu_``, ...), which is checked.

Semantics (same sources): ``con_`` with stride 1 pads ``k // 2``, with stride 2 pads 0;
``max_pool``/``avg_pool`` likewise (padding 0 for stride 2, output ``1 + (n - window) // stride``);
``avg_pool<0,0,1,1>`` (``avg_pool_everything``) is the global mean; ``affine_`` is per-channel
``gamma * x + beta`` (a batch norm folded at training end); ``add_prev`` adds two tensors of possibly
different shapes, the missing elements being zero (the output has the larger size in each dimension);
``fc_no_bias`` is ``x @ W`` with ``W`` stored (num_inputs, num_outputs); ``loss_metric`` outputs the fc
output as it is. The input layer turns an RGB uint8 chip into ``(pixel - avg) / 256`` per channel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmsfactory.errors import DmsFactoryError

CHIP_SIZE = 150


class DlibNetFormatError(DmsFactoryError, ValueError):
    """The ``.dat`` file is not the network this reader knows (names the byte offset and the field)."""


# ----------------------------------------------------------------------------------------------------
# the network's structure, outermost layer first (from dlib/examples/dnn_face_recognition_ex.cpp)


@dataclass
class Node:
    kind: str  # "layer" (add_layer), "tag", "skip", "input"
    name: str = ""  # layer details name: con, affine, relu, max_pool, avg_pool, add_prev, fc
    args: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # filled by the reader


def _block(n: int, stride: int) -> list[Node]:
    # block<N,BN,stride,SUB> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUB>>>>>
    return [
        Node("layer", "affine"),
        Node("layer", "con", {"n": n, "k": 3, "stride": 1}),
        Node("layer", "relu"),
        Node("layer", "affine"),
        Node("layer", "con", {"n": n, "k": 3, "stride": stride}),
    ]


def _ares(n: int) -> list[Node]:
    # relu<add_prev1<block<N,affine,1,tag1<SUB>>>>
    return [Node("layer", "relu"), Node("layer", "add_prev", {"tag": 1}), *_block(n, 1), Node("tag", args={"id": 1})]


def _ares_down(n: int) -> list[Node]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUB>>>>>>>
    return [
        Node("layer", "relu"),
        Node("layer", "add_prev", {"tag": 2}),
        Node("layer", "avg_pool", {"k": 2, "stride": 2}),
        Node("skip", args={"id": 1}),
        Node("tag", args={"id": 2}),
        *_block(n, 2),
        Node("tag", args={"id": 1}),
    ]


def anet_structure() -> list[Node]:
    """``anet_type`` (below ``loss_metric``), outermost first."""
    out: list[Node] = [Node("layer", "fc", {"n": 128}), Node("layer", "avg_pool", {"k": 0, "stride": 1})]
    out += _ares_down(256)  # alevel0
    out += _ares(256) + _ares(256) + _ares_down(256)  # alevel1
    out += _ares(128) + _ares(128) + _ares_down(128)  # alevel2
    out += _ares(64) + _ares(64) + _ares(64) + _ares_down(64)  # alevel3
    out += _ares(32) + _ares(32) + _ares(32)  # alevel4
    out += [
        Node("layer", "max_pool", {"k": 3, "stride": 2}),
        Node("layer", "relu"),
        Node("layer", "affine"),
        Node("layer", "con", {"n": 32, "k": 7, "stride": 2}),
        Node("input", "input_rgb_image_sized", {"size": CHIP_SIZE}),
    ]
    return out


# ----------------------------------------------------------------------------------------------------
# dlib's serialization primitives


class _Reader:
    def __init__(self, buf: bytes, name: str):
        self.buf, self.pos, self.name = buf, 0, name

    def fail(self, what: str) -> DlibNetFormatError:
        return DlibNetFormatError(
            f"{self.name}: byte {self.pos}: {what} (not dlib's face-recognition ResNet v1 as this reader knows it; "
            "use dlib itself: privacy descriptor backend 'dlib')"
        )

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise self.fail(f"file ends while reading {n} bytes")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def int(self) -> int:
        ctl = self._take(1)[0]
        size = ctl & 0x0F
        if size == 0 or size > 8 or ctl & 0x70:
            raise self.fail(f"bad integer control byte 0x{ctl:02x}")
        v = int.from_bytes(self._take(size), "little")
        return -v if ctl & 0x80 else v

    def bool(self) -> bool:
        c = self._take(1)
        if c not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {c!r}")
        return c == b"1"

    def str(self) -> str:
        n = self.int()
        if not 0 <= n < 1 << 16:
            raise self.fail(f"bad string length {n}")
        return self._take(n).decode("latin-1")

    def float(self) -> float:
        if self.pos < len(self.buf) and self.buf[self.pos] & 0x70:
            raise self.fail("float in dlib's old ASCII format (unsupported)")
        mant, exp = self.int(), self.int()
        if exp >= 32000:  # float_details markers: is_inf 32000, is_ninf 32001, is_nan 32002
            return {32000: float("inf"), 32001: float("-inf")}.get(exp, float("nan"))
        return float(np.ldexp(float(mant), exp))

    def version(self, want: set[int], what: str) -> int:
        v = self.int()
        if v not in want:
            raise self.fail(f"{what}: version {v}, expected one of {sorted(want)}")
        return v

    def tensor(self) -> np.ndarray:
        self.version({2}, "tensor")
        dims = [self.int() for _ in range(4)]
        if min(dims) < 0:
            raise self.fail(f"tensor: negative dimension {dims}")
        n = int(np.prod(dims))
        arr = np.frombuffer(self._take(4 * n), dtype="<f4").astype(np.float32)
        return arr.reshape(dims)

    def alias(self) -> tuple[int, ...]:
        self.version({1}, "alias_tensor")
        return tuple(self.int() for _ in range(4))


def _read_details(r: _Reader, node: Node) -> None:
    name = r.str()
    a, d = node.args, node.data
    if node.name == "con":
        if name not in ("con_4", "con_5", "con_6"):
            raise r.fail(f"expected a con_ layer, found {name!r}")
        params = r.tensor()
        num_filters = r.int()
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        filt, bias = r.alias(), r.alias()
        for _ in range(4):
            r.float()  # learning-rate / weight-decay multipliers
        use_bias = r.bool() if name in ("con_5", "con_6") else True
        if name == "con_6":
            r.bool()  # use_relu (a fused relu only dlib's CUDA path uses; absent in this file's version)
        want_pad = a["k"] // 2 if a["stride"] == 1 else 0
        if (num_filters, nr, nc, sy, sx, py, px) != (a["n"], a["k"], a["k"], a["stride"], a["stride"], want_pad, want_pad):
            raise r.fail(f"con_: shape {(num_filters, nr, nc, sy, sx, py, px)} differs from the expected {a}")
        flat = params.reshape(-1)
        nf = int(np.prod(filt))
        d["weight"] = flat[:nf].reshape(filt[0], filt[1], filt[2], filt[3])
        d["bias"] = flat[nf : nf + int(np.prod(bias))].copy() if use_bias else np.zeros(num_filters, np.float32)
        d["stride"], d["pad"] = sy, py
    elif node.name == "affine":
        if name not in ("affine_", "affine_2"):
            raise r.fail(f"expected an affine_ layer, found {name!r} (a bn_ layer is not handled here)")
        params = r.tensor().reshape(-1)
        g, b = r.alias(), r.alias()
        mode = r.int()
        if name == "affine_2" and r.bool():
            raise r.fail("affine_: disabled layer")
        if mode != 0:  # CONV_MODE (per channel; FC_MODE is 1)
            raise r.fail(f"affine_: mode {mode}, expected CONV_MODE (0)")
        ng = int(np.prod(g))
        d["gamma"], d["beta"] = params[:ng].copy(), params[ng : ng + int(np.prod(b))].copy()
    elif node.name == "relu":
        if name == "relu_2":
            if r.bool():
                raise r.fail("relu_: disabled layer")
        elif name != "relu_":
            raise r.fail(f"expected a relu_ layer, found {name!r}")
    elif node.name in ("max_pool", "avg_pool"):
        if name != f"{node.name}_2":
            raise r.fail(f"expected {node.name}_2, found {name!r}")
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        want_pad = a["k"] // 2 if a["stride"] == 1 else 0
        if (nr, nc, sy, sx, py, px) != (a["k"], a["k"], a["stride"], a["stride"], want_pad, want_pad):
            raise r.fail(f"{node.name}: {(nr, nc, sy, sx, py, px)} differs from the expected {a}")
    elif node.name == "add_prev":
        if name != "add_prev_":
            raise r.fail(f"expected add_prev_, found {name!r}")
    elif node.name == "fc":
        if name not in ("fc_2", "fc_3"):
            raise r.fail(f"expected an fc_ layer, found {name!r}")
        n_out, n_in = r.int(), r.int()
        params = r.tensor().reshape(-1)
        r.alias(), r.alias()  # the weight and bias aliases: the tensor above holds both
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if name == "fc_3":
            r.bool()  # use_bias
        if bias_mode != 1 or n_out != a["n"]:  # FC_NO_BIAS
            raise r.fail(f"fc_: bias mode {bias_mode} / outputs {n_out}, expected fc_no_bias<{a['n']}>")
        d["weight"] = params[: n_in * n_out].reshape(n_in, n_out).copy()
    else:  # pragma: no cover - structure table and reader disagree
        raise r.fail(f"no reader for layer {node.name}")


def _read_layer_tail(r: _Reader, node: Node, version: int) -> None:
    """What ``add_layer`` writes after its subnet: details, three flags, x_grad, cached_output, [params_grad]."""
    _read_details(r, node)
    for _ in range(3):
        r.bool()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if version == 2:
        r.tensor()  # params_grad


def read_dlib_resnet(path: str | Path) -> tuple[list[Node], dict[str, Any]]:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat``; returns (nodes outermost first, input info)."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise DlibNetFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    r = _Reader(buf, str(path))
    r.version({1}, "add_loss_layer")
    loss = r.str()
    if loss == "loss_metric_2":
        r.float(), r.float()  # margin, dist_thresh (training only)
    elif loss != "loss_metric_":
        raise r.fail(f"expected loss_metric, found {loss!r}")
    nodes = anet_structure()
    versions: list[int] = []
    for i, node in enumerate(nodes[:-1]):
        want = {1} if node.kind != "layer" else {2, 3} if i == len(nodes) - 2 else {1, 2}
        versions.append(r.version(want, f"{node.kind} {node.name}".strip()))
    # innermost add_layer: its subnet is the input layer (a different add_layer specialisation)
    inp = nodes[-1]
    first = nodes[-2]
    v_first = versions[-1]
    if r.str() != "input_rgb_image_sized":
        raise r.fail("expected input_rgb_image_sized")
    inp.data["avg"] = (r.float(), r.float(), r.float())
    nr, nc = r.int(), r.int()
    if (nr, nc) != (CHIP_SIZE, CHIP_SIZE):
        raise r.fail(f"input size {nr}x{nc}, expected {CHIP_SIZE}x{CHIP_SIZE}")
    _read_details(r, first)
    for _ in range(3):
        r.bool()
    r.tensor(), r.tensor(), r.tensor()  # x_grad, cached_output, grad_final
    if v_first == 3:
        r.int()  # sample_expansion_factor
    for node, v in zip(reversed(nodes[:-2]), reversed(versions[:-1])):
        if node.kind == "layer":
            _read_layer_tail(r, node, v)
    if r.pos != len(buf):
        raise r.fail(f"{len(buf) - r.pos} bytes left after the network")
    return nodes, inp.data


# ----------------------------------------------------------------------------------------------------
# torch module


def _build_module(nodes: list[Node], avg: tuple[float, float, float]):
    import torch  # heavy: torch
    import torch.nn.functional as F  # heavy: torch

    class DlibResNet(torch.nn.Module):
        """The parsed network, innermost first; conv + affine pairs folded into one conv."""

        def __init__(self):
            super().__init__()
            self.ops: list[tuple] = []
            self.params = torch.nn.ParameterList()
            seq = list(reversed(nodes[:-1]))  # innermost first
            i = 0
            while i < len(seq):
                n = seq[i]
                if n.kind == "layer" and n.name == "con":
                    w = torch.from_numpy(n.data["weight"].copy())
                    b = torch.from_numpy(n.data["bias"].copy())
                    if i + 1 < len(seq) and seq[i + 1].name == "affine":
                        g = torch.from_numpy(seq[i + 1].data["gamma"])
                        be = torch.from_numpy(seq[i + 1].data["beta"])
                        w, b = w * g[:, None, None, None], b * g + be
                        i += 1
                    self.params.append(torch.nn.Parameter(w, requires_grad=False))
                    self.params.append(torch.nn.Parameter(b, requires_grad=False))
                    self.ops.append(("conv", len(self.params) - 2, n.data["stride"], n.data["pad"]))
                elif n.kind == "layer" and n.name == "relu":
                    self.ops.append(("relu",))
                elif n.kind == "layer" and n.name in ("max_pool", "avg_pool"):
                    self.ops.append((n.name, n.args["k"], n.args["stride"]))
                elif n.kind == "layer" and n.name == "add_prev":
                    self.ops.append(("add_prev", n.args["tag"]))
                elif n.kind == "layer" and n.name == "fc":
                    self.params.append(torch.nn.Parameter(torch.from_numpy(n.data["weight"]), requires_grad=False))
                    self.ops.append(("fc", len(self.params) - 1))
                elif n.kind == "tag":
                    self.ops.append(("tag", n.args["id"]))
                elif n.kind == "skip":
                    self.ops.append(("skip", n.args["id"]))
                else:  # pragma: no cover
                    raise DlibNetFormatError(f"cannot run layer {n.kind} {n.name}")
                i += 1
            self.register_buffer("avg", torch.tensor(avg, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, chips: torch.Tensor) -> torch.Tensor:
            """chips: (N, 150, 150, 3) uint8 RGB -> (N, 128) float32 descriptors."""
            x = (chips.permute(0, 3, 1, 2).float() - self.avg) / 256.0
            tags: dict[int, torch.Tensor] = {}
            for op in self.ops:
                kind = op[0]
                if kind == "conv":
                    x = F.conv2d(x, self.params[op[1]], self.params[op[1] + 1], stride=op[2], padding=op[3])
                elif kind == "relu":
                    x = F.relu(x)
                elif kind == "max_pool":
                    x = F.max_pool2d(x, op[1], op[2])
                elif kind == "avg_pool":
                    x = x.mean(dim=(2, 3), keepdim=True) if op[1] == 0 else F.avg_pool2d(x, op[1], op[2])
                elif kind == "add_prev":
                    y = tags[op[1]]
                    if y.shape != x.shape:  # dlib: the missing elements are zero
                        c, h, w = (max(a, b) for a, b in zip(x.shape[1:], y.shape[1:]))
                        x = F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))
                        y = F.pad(y, (0, w - y.shape[3], 0, h - y.shape[2], 0, c - y.shape[1]))
                    x = x + y
                elif kind == "tag":
                    tags[op[1]] = x
                elif kind == "skip":
                    x = tags[op[1]]
                elif kind == "fc":
                    x = x.flatten(1) @ self.params[op[1]]
            return x

    return DlibResNet().eval()


class TorchFaceRecognizer:
    """dlib's face-recognition ResNet v1 run in torch, weights read from ``face_recognition_models``'s
    ``.dat``. ``describe_chips`` takes dlib's aligned 150x150 chips (``dlib.get_face_chip(img, shape,
    150, 0.25)``, what ``compute_face_descriptor`` extracts internally)."""

    def __init__(self, path: str | Path | None = None):
        if path is None:
            import face_recognition_models as frm

            path = frm.face_recognition_model_location()
        self.path = Path(path)
        nodes, inp = read_dlib_resnet(self.path)
        self.net = _build_module(nodes, inp["avg"])

    def describe_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) or (150, 150, 3) uint8 RGB chips -> (N, 128) float32."""
        import torch  # heavy: torch

        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        if chips.dtype != np.uint8 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"chips: expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8, got {chips.shape} {chips.dtype}")
        with torch.inference_mode():
            return self.net(torch.from_numpy(np.ascontiguousarray(chips))).numpy().astype(np.float32)


@functools.lru_cache(maxsize=1)
def default_recognizer() -> TorchFaceRecognizer:
    return TorchFaceRecognizer()

