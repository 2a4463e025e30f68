"""Keras model -> TFLite flatbuffers: a float reference and the full-integer int8 model we ship.

Belongs here: the converter settings and reading tensor specs back for the model card.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt


def to_float_tflite(model: Any) -> bytes:
    import tensorflow as tf

    return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def to_int8_tflite(model: Any, calibration: npt.NDArray[np.float32]) -> bytes:
    """Post-training full-integer quantization: every op int8, uint8 image in (0..255 with
    scale 1/255), int8 logits out; `calibration` is (N, 28, 28, 1) float images in [0, 1]."""
    import tensorflow as tf

    def representative() -> Iterator[list[npt.NDArray[np.float32]]]:
        for image in calibration:
            yield [image[None].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def tensor_specs(content: bytes) -> dict[str, dict[str, Any]]:
    """Input and output shape, dtype and quantization of a flatbuffer, as the card records them."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=content)
    out = {}
    for role, details in (
        ("input", interp.get_input_details()[0]),
        ("output", interp.get_output_details()[0]),
    ):
        scale, zero_point = details["quantization"]
        out[role] = {
            "shape": [int(v) for v in details["shape"]],
            "dtype": np.dtype(details["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero_point),
        }
    return out
