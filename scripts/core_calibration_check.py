"""Per-core unlabelled calibration of a mismatched chip, measured (docs/hardware-aware.md §5).

For each mismatch draw (one chip), each used core's mean firing rate over unlabelled inputs (the
training split) is brought to the nominal chip's by scaling the core's AMPA dendrite gain
(``DEAM_EGAIN_P``: the charge of every excitatory CAM entry of the core) by the ratio of the rates,
three times, each step within [0.5, 2]; the recoded configuration is then scored on the test split
with the same draw. This is what a board can do with its own monitored spikes. Measured on the
shipped digits model it does not help (the mean rate of a core is the wrong target: the per-device
part of the mismatch, not the core's, reorders the readout), so it is a script, not a library step.

    OMP_NUM_THREADS=1 python scripts/core_calibration_check.py out/digits-dynapse2 \\
        --mismatch 0.1 --seeds 6,7,9
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eideploy.data import load_dataset, to_float  # noqa: E402
from eideploy.targets.dynapse2 import biases  # noqa: E402
from eideploy.targets.dynapse2.analog import AnalogResult, AnalogSimulator  # noqa: E402
from eideploy.targets.dynapse2.compile import DENDRITE_GAIN_BIAS  # noqa: E402
from eideploy.targets.dynapse2.config import read_config  # noqa: E402

#: The bias turned per core: the AMPA dendrite's gain (``I_gain / I_tau`` of every excitatory
#: CAM entry of the core, docs/analog-model.md §1).
CALIBRATED_BIAS = DENDRITE_GAIN_BIAS["ampa"]


def core_rates(config: Mapping[str, Any], result: AnalogResult) -> dict[tuple[int, int], float]:
    """Mean firing rate (Hz) of each used core's neurons in ``result`` (a run of ``config``)."""
    out = {}
    for chip in config["chips"]:
        for core in chip["cores"]:
            rates = [np.asarray(result.rates[s["population"]])[int(s["start"]):int(s["stop"])]
                     for s in core.get("populations", []) if s["population"] in result.rates]
            if rates:
                out[(int(chip["id"]), int(core["id"]))] = float(np.concatenate(rates).mean())
    return out


def calibrate_cores(config: Mapping[str, Any], x: np.ndarray,
                    reference: Mapping[tuple[int, int], float], *, mismatch: float, seed: int,
                    iterations: int = 3, limits: tuple[float, float] = (0.5, 2.0)
                    ) -> tuple[dict[str, Any], dict[tuple[int, int], float]]:
    """The configuration with each core's :data:`CALIBRATED_BIAS` recoded so that its mean rate
    on ``x`` matches ``reference`` on this draw, and the factor applied per core."""
    tuned = copy.deepcopy(dict(config))
    applied = {key: 1.0 for key in reference}
    low, high = limits
    for _ in range(iterations):
        measured = core_rates(tuned, AnalogSimulator(tuned, mismatch=mismatch, seed=seed).run(x))
        for chip in tuned["chips"]:
            for core in chip["cores"]:
                key = (int(chip["id"]), int(core["id"]))
                codes = core.get("bias_codes", {})
                if key not in reference or CALIBRATED_BIAS not in codes or reference[key] <= 0:
                    continue
                ratio = reference[key] / measured[key] if measured.get(key, 0) > 0 else high
                code = codes[CALIBRATED_BIAS]
                now = biases.bias_current(CALIBRATED_BIAS, int(code["coarse"]),
                                          int(code["fine"]))
                new = biases.bias_code(CALIBRATED_BIAS, now * min(max(ratio, low), high))
                codes[CALIBRATED_BIAS] = {**code, "coarse": new.coarse, "fine": new.fine,
                                          "realised": new.realised}
                applied[key] *= new.realised / now
    return tuned, applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="an export directory (dynapse2.json)")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--mismatch", type=float, default=0.1)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--unlabelled", type=int, default=100, help="training images used")
    args = parser.parse_args()
    config = read_config(Path(args.export) / "dynapse2.json")
    steps = int(config["graph"]["T"])
    test = load_dataset(args.data, "test", T=steps)
    x, y = to_float(test.inputs).numpy(), test.labels.numpy()
    xc = to_float(load_dataset(args.data, "train", T=steps).inputs).numpy()[:args.unlabelled]
    reference = core_rates(config, AnalogSimulator(config).run(xc))
    for seed in (int(s) for s in args.seeds.split(",")):
        sim = AnalogSimulator(config, mismatch=args.mismatch, seed=seed)
        before = 100 * np.mean(sim.run(x).predictions() == y)
        tuned, factors = calibrate_cores(config, xc, reference, mismatch=args.mismatch,
                                         seed=seed)
        after = 100 * np.mean(AnalogSimulator(tuned, mismatch=args.mismatch, seed=seed)
                              .run(x).predictions() == y)
        print(f"mismatch {args.mismatch:g} seed {seed}: {before:.2f}% -> {after:.2f}% "
              f"(factors {', '.join(f'{k}: {v:.2f}' for k, v in factors.items())})", flush=True)


if __name__ == "__main__":
    main()
