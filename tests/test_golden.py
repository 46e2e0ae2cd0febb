"""Golden vectors: tiny fixture networks whose stored inputs must give, bit for bit, the stored
integer states, spikes, readout counts and saturation counts of every division mode.

The fixtures and their expected values are files in tests/golden/ (written once by
tests/golden/make_golden.py); a change of the integer arithmetic, deliberate or not, shows here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eideploy.graph import EIGraph
from eideploy.sim.integer import IntegerSimulator

GOLDEN = Path(__file__).resolve().parent / "golden"
FIXTURES = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.npz").is_file())
MODES = ("exact", "lut:8", "lut:4:newton", "shift")


def test_the_golden_fixtures_are_all_there():
    assert FIXTURES == ["saturating", "tiny-div", "two-layer"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fixture", FIXTURES)
def test_stored_inputs_reproduce_every_stored_state_bit_for_bit(fixture, mode):
    graph = EIGraph.load(GOLDEN / fixture)
    with np.load(GOLDEN / fixture / "inputs.npz") as inputs:
        x = inputs["x"]
    with np.load(GOLDEN / fixture / "expected.npz") as stored:
        expected = {k[len(mode) + 1:]: stored[k] for k in stored.files
                    if k.startswith(mode + "/")}
    result = IntegerSimulator(graph, mode).run(x, return_states=True)
    produced = {f"{pop}/{q}": np.asarray(v) for pop, state in result.states.items()
                for q, v in state.items()}
    produced.update(counts=result.counts, membrane=result.membrane)
    assert sorted(produced) == sorted(expected)
    for key, value in expected.items():
        assert produced[key].dtype.kind == "i", key
        np.testing.assert_array_equal(produced[key], value, err_msg=f"{fixture} {mode} {key}")
    saturations = json.loads((GOLDEN / fixture / "saturations.json").read_text())[mode]
    assert dict(sorted(result.saturations.items())) == saturations


def test_the_golden_vectors_exercise_spikes_division_modes_and_saturation():
    with np.load(GOLDEN / "two-layer" / "expected.npz") as e:
        assert e["exact/l2.exc/output"].sum() > 0 and e["exact/counts"].sum() > 0
        # the modes differ where they should: shift moves the divided current
        assert not np.array_equal(e["exact/l1.exc/current"], e["shift/l1.exc/current"])
        assert not np.array_equal(e["exact/l1.exc/current"], e["lut:8/l1.exc/current"])
    saturations = json.loads((GOLDEN / "saturating" / "saturations.json").read_text())
    assert all(sum(s.values()) > 0 for s in saturations.values())
