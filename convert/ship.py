"""From a trained Keras model to a served int8 model: quantize, fit the temperature on
held-out drawings of the training sources, write the card.

Belongs here: the order of those steps, shared by `convert all` and every leave-one-source-out
fold, so the folds measure the recipe that ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convert import trainset
from convert.augment import to_uint8
from convert.calibrate import fit_temperature
from convert.card import base_card, write_card
from convert.quantize import to_int8_tflite
from convert.train import TrainConfig, representative_images, sources_of
from convert.trainset import Rows
from server.model import load_model
from server.verdict import Thresholds

#: The verdict thresholds written into the card: the server's defaults (server/verdict.py,
#: where they are set); THRESHOLDS_WHY says where they come from. Changing them changes no
#: weight: `convert loso --remeasure` and `convert card --remeasure` measure the kept models
#: again at new ones.
THRESHOLDS = Thresholds()
THRESHOLDS_WHY = (
    "unsure_below 0.6 was fixed in advance (unsure while the best digit is less than 60% "
    "likely). reject_at 0.4 was chosen without looking at any source it is measured on: "
    "`bench/rejection.py` picks, for each UNIPEN source, the largest threshold at which the "
    "leave-one-source-out fold models of the other seven sources reject at least 91% of "
    "their must-reject letters and symbols. On model v6's folds those choices were "
    "0.40-0.43 (measured on each held-out source: 0.77% of its digits and 91.22% of its "
    "must-reject letters rejected, pooled; 0.5, the earlier default fixed in advance, 0.57% "
    "and 88.32%); on this model's folds (v8) they are 0.36-0.40 (0.60% and 90.99%), and "
    "0.4 for every source gives the table above (0.55% and 90.56%), so it stays"
)


def quantize_and_calibrate(model: Any, rows: Rows, cfg: TrainConfig, out: Path) -> dict[str, Any]:
    """Write the int8 model and its card (temperature and thresholds included); return the card."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(to_int8_tflite(model, representative_images(rows, cfg.seed)))
    card = base_card(model, cfg, out)
    write_card(out, card)
    drawings, labels = trainset.calibration_set(cfg, sources_of(cfg))
    images = to_uint8(drawings).astype(np.float32) / 255.0
    logits = load_model(out, "cpu").logits(images)
    card["temperature"] = fit_temperature(logits, np.asarray(labels))
    card["calibration"] = {
        "samples": len(labels) // (1 + len(trainset.PREFIX_FRACTIONS)),
        "drawings": len(labels),
        "what": "the calibration split (1 in 8 samples of the training sources by id hash, "
        "never trained on), complete and at 25/50/75% of the points; temperature fitted "
        "on the int8 model by the digits' negative log-likelihood",
    }
    card["verdict"] = THRESHOLDS.to_card()
    write_card(out, card)
    print(f"temperature {card['temperature']} from {len(labels)} calibration drawings", flush=True)
    return card
