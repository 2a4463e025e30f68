"""Load the int8 TFLite digit model and run it: (N, 28, 28) images in, (N, 10) probabilities out,
and, for a model with an eleventh "not a digit" class, the probability that ink is no digit.

Belongs here: finding a runtime (LiteRT, else tflite-runtime), choosing the accelerator,
checking the file against its model card, quantizing inputs, dequantizing outputs and the
card's temperature calibration.
Synchronous, one call at a time: the micro-batcher never overlaps batches (it runs them in its
inference thread, or in the inference process of server/offload.py with a Model of its own,
or a lone cheap one on the event loop).
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Accelerator = Literal["auto", "cpu", "gpu"]
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "digits.tflite"
_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)  # batch sizes the runners are built for; inputs are padded


class ModelError(RuntimeError):
    """The model cannot be used: missing, corrupt, or not the model its card describes."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What a model card says about the input or the output tensor."""

    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def from_card(cls, raw: dict[str, Any]) -> TensorSpec:
        return cls(
            tuple(raw["shape"]), str(raw["dtype"]), float(raw["scale"]), int(raw["zero_point"])
        )

    @classmethod
    def from_details(cls, d: dict[str, Any]) -> TensorSpec:
        scale, zero_point = d["quantization"]
        return cls(
            tuple(int(v) for v in d["shape"]),
            np.dtype(d["dtype"]).name,
            float(scale),
            int(zero_point),
        )

    def matches(self, other: TensorSpec) -> bool:
        return (
            self.shape[1:] == other.shape[1:]
            and self.dtype == other.dtype
            and self.zero_point == other.zero_point
            and bool(np.isclose(self.scale, other.scale, rtol=1e-6))
        )


class _Runner(Protocol):
    def run(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]: ...


def card_path(model_path: Path) -> Path:
    """The model card that must sit beside a model: same name, `.json`."""
    return model_path.with_suffix(".json")


def _runtime_module(name: str) -> Any:
    """The Interpreter module of LiteRT, or of tflite-runtime when LiteRT is not installed."""
    for module in ("ai_edge_litert", "tflite_runtime"):
        try:
            return importlib.import_module(f"{module}.{name}")
        except ImportError:
            continue
    raise ModelError("no TFLite runtime: install ai-edge-litert (or tflite-runtime)")


def runtime_name() -> str:
    """Which runtime `load_model` uses here: 'litert' or 'tflite-runtime'."""
    mod = _runtime_module("interpreter").__name__
    return "litert" if mod.startswith("ai_edge_litert") else "tflite-runtime"


class _CpuRunner:
    """One TFLite Interpreter per batch bucket; a batch is padded up to its bucket."""

    def __init__(self, content: bytes, threads: int) -> None:
        self._content = content
        self._threads = threads
        self._interp: dict[int, Any] = {}
        self.input, self.output = self._details(self._get(1))

    @staticmethod
    def _details(interp: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        ins, outs = interp.get_input_details(), interp.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ModelError(f"expected one input and one output, got {len(ins)} and {len(outs)}")
        return ins[0], outs[0]

    def _get(self, bucket: int) -> Any:
        interp = self._interp.get(bucket)
        if interp is None:
            mod = _runtime_module("interpreter")
            try:
                interp = mod.Interpreter(model_content=self._content, num_threads=self._threads)
                inp = interp.get_input_details()[0]
                if int(inp["shape"][0]) != bucket:
                    interp.resize_tensor_input(inp["index"], [bucket, *inp["shape"][1:]])
                interp.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"the runtime rejected the model: {exc}") from exc
            self._interp[bucket] = interp
        return interp

    def run(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        out: list[npt.NDArray[Any]] = []
        for start, bucket in _chunks(len(x)):
            chunk = x[start : start + bucket]
            n = len(chunk)
            interp = self._get(bucket)
            if bucket != n:
                chunk = np.concatenate(
                    [chunk, np.zeros((bucket - n, *chunk.shape[1:]), chunk.dtype)]
                )
            # Every bucket's interpreter is the same graph: the tensor indices are the same.
            interp.set_tensor(self.input["index"], chunk)
            interp.invoke()
            out.append(interp.get_tensor(self.output["index"])[:n])
        return out[0] if len(out) == 1 else np.concatenate(out)


def _chunks(n: int) -> list[tuple[int, int]]:
    """(start, bucket) pieces covering n images. The CPU's cost is per image, padding
    included, and a call costs about a tenth of an image: a piece is padded up to its
    bucket only when that wastes at most an eighth of it, else the largest bucket that
    fits is taken and the rest follows (53 = 32 + 16 + 4 + 1, not 64 with 11 blank)."""
    out, start = [], 0
    while start < n:
        left = n - start
        up = next((b for b in _BUCKETS if b >= left), _BUCKETS[-1])
        if up - left > up // 8:
            up = max(b for b in _BUCKETS if b <= left)
        out.append((start, up))
        start += up
    return out


class _GpuRunner:
    """LiteRT CompiledModel on the GPU accelerator, fixed batch per compiled model."""

    def __init__(self, path: Path, input_spec: TensorSpec, output_spec: TensorSpec) -> None:
        cm = _runtime_module("compiled_model")
        hw = _runtime_module("hardware_accelerator").HardwareAccelerator
        self._cm, self._hw = cm, hw
        self._path = str(path)
        self._in, self._out = input_spec, output_spec
        self._models: dict[int, tuple[Any, list[Any], list[Any]]] = {}
        self._get(1)

    def _get(self, bucket: int) -> tuple[Any, list[Any], list[Any]]:
        entry = self._models.get(bucket)
        if entry is None:
            model = self._cm.CompiledModel.from_file(self._path, hardware_accel=self._hw.GPU)
            if not model.is_fully_accelerated():
                raise ModelError("the GPU accelerator does not run every op of this model")
            if bucket != 1:
                model.resize_input_tensor(0, [bucket, *self._in.shape[1:]], strict=False)
            entry = (model, model.create_input_buffers(0), model.create_output_buffers(0))
            self._models[bucket] = entry
        return entry

    def run(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        n = len(x)
        bucket = next((b for b in _BUCKETS if b >= n), _BUCKETS[-1])
        if n > bucket:
            return np.concatenate([self.run(x[i : i + bucket]) for i in range(0, n, bucket)])
        model, ins, outs = self._get(bucket)
        if bucket != n:
            x = np.concatenate([x, np.zeros((bucket - n, *x.shape[1:]), x.dtype)])
        ins[0].write(np.ascontiguousarray(x))
        model.run_by_index(0, ins, outs)
        size = bucket * int(np.prod(self._out.shape[1:]))
        flat = np.asarray(outs[0].read(size, np.dtype(self._out.dtype)))
        return flat.reshape(bucket, *self._out.shape[1:])[:n]


DIGITS = 10


@dataclass(frozen=True, slots=True)
class Scores:
    """What the model says about N drawings."""

    digits: npt.NDArray[np.float32]  # (N, 10): P(digit | the ink is a digit); rows sum to 1
    not_digit: npt.NDArray[np.float32]  # (N,): P(the ink is not a digit); 0 for a 10-class model


class Model:
    """A loaded digit model. `predict_batch` is synchronous; call it from one thread at a time.

    The card's `temperature` (default 1) divides the logits before the softmax: it was fitted
    after quantization so the reported probabilities are honest. A model with 11 outputs has
    a "not a digit" class; its probability is `Scores.not_digit`."""

    def __init__(self, path: Path, card: dict[str, Any], runner: _Runner, accelerator: str) -> None:
        self.path = path
        self.card = card
        self.accelerator = accelerator
        self.runtime = runtime_name()
        self.name = str(card.get("name", path.stem))
        self.input_spec = TensorSpec.from_card(card["input"])
        self.output_spec = TensorSpec.from_card(card["output"])
        self.classes = int(np.prod(self.output_spec.shape[1:]))
        self.temperature = float(card.get("temperature", 1.0))
        if self.classes not in (DIGITS, DIGITS + 1) or not self.temperature > 0:
            raise ModelError(
                f"{path}: expected 10 or 11 outputs and a positive temperature, "
                f"got {self.classes} and {self.temperature}"
            )
        self._runner = runner
        self.gpu_error: str | None = None  # why `auto` fell back to the CPU, if it did

    def logits(self, images: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """(N, 28, 28) float images in [0, 1] (1 = ink) -> (N, classes) dequantized logits,
        before the temperature."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"expected (N, 28, 28) images, got shape {x.shape}")
        if len(x) == 0:
            return np.zeros((0, self.classes), np.float32)
        q = self._quantize(x).reshape(len(x), *self.input_spec.shape[1:])
        raw = self._runner.run(q).astype(np.float32)
        out = self.output_spec
        logits = raw if out.dtype == "float32" else (raw - out.zero_point) * out.scale
        return logits.reshape(len(x), -1)

    def predict_scores(self, images: npt.ArrayLike) -> Scores:
        """Digit probabilities and the not-a-digit probability of each image."""
        return scores_from_logits(self.logits(images), self.temperature)

    def predict_batch(self, images: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """(N, 28, 28) float images in [0, 1] (1 = ink) -> (N, 10) digit probabilities (rows
        sum to 1; for an 11-class model, given that the ink is a digit)."""
        return self.predict_scores(images).digits

    def _quantize(self, x: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        """Images in [0, 1] -> the input tensor's integers (values outside [0, 1] clipped)."""
        spec = self.input_spec
        if spec.dtype == "float32":  # a float reference model, as `convert` evaluates
            return np.clip(x, 0.0, 1.0)
        info = np.iinfo(np.dtype(spec.dtype))
        # clipping x to [0, 1] first is clipping q to [zero point, 1 / scale + zero point]
        lo = max(info.min, spec.zero_point)
        hi = min(info.max, round(1.0 / spec.scale) + spec.zero_point)
        q = x * np.float32(1.0 / spec.scale)
        if spec.zero_point:
            q += np.float32(spec.zero_point)
        np.rint(q, out=q)
        np.clip(q, lo, hi, out=q)
        return q.astype(spec.dtype)


def scores_from_logits(logits: npt.NDArray[np.float32], temperature: float = 1.0) -> Scores:
    """Softmax of logits / temperature; with 11 classes the digits are renormalised among
    themselves and the last class is the not-a-digit probability."""
    scaled = np.asarray(logits, np.float32) / np.float32(temperature)
    digits = scaled[:, :DIGITS]
    top = digits.max(axis=1, keepdims=True)
    z = np.exp(digits - top)
    mass = z.sum(axis=1, keepdims=True)
    probs: npt.NDArray[np.float32] = z / mass
    if scaled.shape[1] == DIGITS:
        return Scores(probs, np.zeros(len(z), np.float32))
    # P(not a digit) = e^s10 / (e^s10 + sum e^digit) = 1 / (1 + mass * e^(top - s10))
    gap = np.clip(top[:, 0] - scaled[:, DIGITS], -80.0, 80.0)
    return Scores(probs, (1.0 / (1.0 + mass[:, 0] * np.exp(gap))).astype(np.float32))


def read_card(model_path: Path) -> dict[str, Any]:
    """The model card beside `model_path`, parsed; ModelError if missing or unreadable."""
    path = card_path(model_path)
    try:
        card = json.loads(path.read_text())
        TensorSpec.from_card(card["input"])
        TensorSpec.from_card(card["output"])
    except FileNotFoundError as exc:
        raise ModelError(f"model card {path} is missing") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"model card {path} is unreadable: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelError(f"model card {path} is not a JSON object")
    return card


def load_model(
    path: Path | str = DEFAULT_MODEL, accelerator: Accelerator = "auto", threads: int = 1
) -> Model:
    """Load and check a model. 'gpu' fails unless LiteRT's GPU accelerator runs it;
    'auto' tries the GPU and falls back to the CPU. `Model.accelerator` says which runs."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc.strerror or exc}") from exc
    card = read_card(path)
    cpu = _CpuRunner(content, threads)
    _check_against_card(path, card, cpu)
    if accelerator == "cpu":
        return Model(path, card, cpu, "cpu")
    try:
        gpu = _GpuRunner(
            path, TensorSpec.from_card(card["input"]), TensorSpec.from_card(card["output"])
        )
    except Exception as exc:  # any failure to set up the GPU means "no GPU here"
        if accelerator == "gpu":
            raise ModelError(f"GPU accelerator unavailable: {exc}") from exc
        log.debug("GPU accelerator unavailable (%s); using the CPU", exc)
        model = Model(path, card, cpu, "cpu")
        model.gpu_error = str(exc) or type(exc).__name__
        return model
    return Model(path, card, gpu, "gpu")


def _check_against_card(path: Path, card: dict[str, Any], cpu: _CpuRunner) -> None:
    for role, details in (("input", cpu.input), ("output", cpu.output)):
        expected = TensorSpec.from_card(card[role])
        actual = TensorSpec.from_details(details)
        if not expected.matches(actual):
            raise ModelError(f"{path}: {role} is {actual}, but the model card says {expected}")
