"""DYNAP-SE2 bias codes: currents <-> (coarse, fine) with rockpool's generator tables."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from eideploy.targets.dynapse2 import biases as B
from eideploy.targets.dynapse2.rockpool_shim import rockpool_import

N_PARAM, P_PARAM = "SOIF_LEAK_N", "DEAM_ETAU_P"


@pytest.fixture(scope="module")
def rockpool_biasgen():
    with rockpool_import():
        from rockpool.devices.dynapse.parameters import biasgen
        from rockpool.devices.dynapse.samna_alias import Dynapse2Parameter
    return biasgen, Dynapse2Parameter


def log_sweep(name: str, decades_above_floor: tuple[float, float], n: int = 2000) -> np.ndarray:
    low, high = B.bias_range(name)
    top = min(math.log10(low) + decades_above_floor[1], math.log10(high))
    return np.logspace(math.log10(low) + decades_above_floor[0], top, n)


@pytest.mark.parametrize("name", [N_PARAM, P_PARAM, "SYAM_W0_P"])
def test_round_trip_is_within_about_one_percent_in_the_middle_of_the_range(name):
    req = log_sweep(name, (2.0, 6.0))
    _, _, realised = B.bias_codes(name, req)
    rel = np.abs(realised - req) / req
    # measured: median 0.25%, worst 1.7% (gaps in the fine steps around coarse changes)
    assert np.median(rel) < 0.005 and rel.max() < 0.02


@pytest.mark.parametrize("name", [N_PARAM, P_PARAM])
def test_round_trip_near_the_floor_is_coarser(name):
    req = log_sweep(name, (0.0, 1.0))
    _, _, realised = B.bias_codes(name, req)
    rel = np.abs(realised - req) / req
    assert rel.max() < 0.2 and np.median(rel) < 0.06  # measured: worst 15-17%, median ~4%


@pytest.mark.parametrize("name", [N_PARAM, P_PARAM])
def test_bias_code_realises_the_current_bias_current_reports(name):
    for current in (3e-12, 7.7e-11, 2.5e-9, 1e-7):
        code = B.bias_code(name, current)
        assert code.realised == B.bias_current(name, code.coarse, code.fine)
        assert code.relative_error == pytest.approx(abs(code.realised - current) / current)
        assert not code.clipped and code.type == name[-1]


def test_requests_outside_the_generator_range_are_clipped_and_flagged():
    low, high = B.bias_range(N_PARAM)
    above, below, zero = (B.bias_code(N_PARAM, x) for x in (10 * high, low / 10, 0.0))
    assert above.clipped and (above.coarse, above.fine) == (5, 255) and above.realised == high
    assert below.clipped and below.realised == low
    assert zero.clipped and math.isinf(zero.relative_error)
    assert json.loads(json.dumps(zero.to_dict()))["relative_error"] is None
    assert not B.bias_code(N_PARAM, low).clipped and not B.bias_code(N_PARAM, high).clipped
    with pytest.raises(ValueError, match=">= 0"):
        B.bias_code(N_PARAM, -1e-9)


@pytest.mark.parametrize("name", [N_PARAM, P_PARAM, "SOIF_SPKTHR_P", "SYAM_W3_P", "SYPD_EXT_N"])
def test_bias_current_equals_rockpools_param_to_analog(name, rockpool_biasgen):
    biasgen, Dynapse2Parameter = rockpool_biasgen
    rng = np.random.default_rng(0)
    for coarse, fine in zip(rng.integers(0, 6, 40), rng.integers(0, 256, 40), strict=True):
        param = Dynapse2Parameter(type=name[-1], coarse_value=int(coarse), fine_value=int(fine))
        expected = biasgen.param_to_analog(name, param)
        assert B.bias_current(name, coarse, fine) == expected
        assert expected == biasgen.digital_to_analog(int(coarse), int(fine),
                                                     B._rockpool_tables()[1][name], name[-1])


@pytest.mark.parametrize("name", [N_PARAM, P_PARAM, "SYAM_W1_P"])
def test_bias_code_chooses_the_code_rockpools_analog_to_param_chooses(name, rockpool_biasgen):
    biasgen, _ = rockpool_biasgen
    for current in np.logspace(-12.5, -6.5, 60):
        code = B.bias_code(name, float(current))
        assert (code.coarse, code.fine) == tuple(int(v) for v in
                                                  biasgen.analog_to_param(name, float(current)))


def test_core_biases_and_the_samna_spelling_of_the_delays():
    codes = B.core_biases({"SOIF_LEAK_N": B.leak_current(0.02),
                           "DEAM_ETAU_P": B.synapse_tau_current(0.01, "ampa"),
                           "SYPD_DLY0_P": 1e-9})
    assert list(codes) == ["SOIF_LEAK_N", "DEAM_ETAU_P", "SYPD_DLY0_P"]
    assert codes["SYPD_DLY0_P"] == B.BiasCode(**{**B.bias_code("SYPD_DYL0_P", 1e-9).__dict__,
                                                  "name": "SYPD_DLY0_P"})
    assert all(c.relative_error < 0.01 for c in codes.values())
    with pytest.raises(ValueError, match="unknown DYNAP-SE2 bias"):
        B.bias_code("SOIF_LEAK", 1e-9)
    with pytest.raises(ValueError, match="generator type"):
        B.bias_code("NCCF_CAL_REFBIAS_V", 1e-9)
    with pytest.raises(ValueError, match="outside"):
        B.bias_current(N_PARAM, 6, 0)


def test_model_to_current_conversions_match_rockpools_dynapsim_defaults():
    with rockpool_import():
        from rockpool.devices.dynapse.lookup import defaults as d
    layout = d.default_layout
    assert (B.U_T, B.KAPPA_N, B.KAPPA_P, B.V_TH) == (layout["Ut"], layout["kappa_n"],
                                                     layout["kappa_p"], layout["Vth"])
    assert B.WEIGHT_UNIT_CURRENT == d.default_weights["Iscale"]
    cur, tc = d.default_currents, d.default_time_constants
    assert B.leak_current(tc["tau_mem"]) == pytest.approx(cur["Itau_mem"], rel=1e-12)
    for dendrite in ("ampa", "nmda", "gaba", "shunt"):
        assert B.synapse_tau_current(tc[f"tau_{dendrite}"], dendrite) == pytest.approx(
            cur[f"Itau_{dendrite}"], rel=1e-12)
        assert B.synapse_tau(cur[f"Itau_{dendrite}"], dendrite) == pytest.approx(
            tc[f"tau_{dendrite}"])
    assert B.refractory_current(tc["t_ref"]) == pytest.approx(cur["Iref"], rel=1e-12)
    assert B.pulse_current(tc["t_pulse"]) == pytest.approx(cur["Ipulse"], rel=1e-12)
    assert B.leak_tau(B.leak_current(0.05)) == pytest.approx(0.05)
    # the model's v <- (1 - 1/tau) v: tau = 2 steps of 1 ms decays like exp(-t / 1.4427 ms)
    assert B.tau_seconds(2.0) == pytest.approx(1e-3 / math.log(2))
    assert B.leak_current(B.tau_seconds(math.inf)) == 0.0
    with pytest.raises(ValueError):
        B.tau_seconds(1.0)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)


def test_importing_eideploy_quant_and_biases_loads_neither_rockpool_nor_jax():
    out = _run("import sys, eideploy.quant, eideploy.targets.dynapse2.biases\n"
               "print(sorted(m for m in ('rockpool', 'jax', 'samna') if m in sys.modules))")
    assert out.stdout.strip() == "[]"


def test_reading_rockpools_tables_is_silent_and_leaves_logging_as_it_was():
    out = _run("import logging\n"
               "from eideploy.targets.dynapse2.biases import bias_code\n"
               "root = logging.getLogger(); before = (root.level, list(root.handlers))\n"
               "bias_code('SOIF_LEAK_N', 1e-9)\n"
               "assert (root.level, list(root.handlers)) == before, (root.level, root.handlers)\n"
               "print('ok')")
    assert out.stdout.strip() == "ok"
    assert "samna" not in out.stderr
