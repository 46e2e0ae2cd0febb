"""The virtual DYNAP-SE2 board (``eideploy.targets.dynapse2.board.virtual``) and, through it, the
board path: the shipped digits model runs on it as on the analog simulator, and each defect the
board path once had (wrong host hops, the wrong chip layout, no reset between samples, a stale
end marker, a duplicated tag) is caught by its accuracy or its routing report.

The board computes from the applied samna configuration alone; these tests compare it with the
analog simulator, which reads ``dynapse2.json`` and the graph: two independent paths to the same
physics. A few dozen samples each (one sample of the virtual board takes ~0.5 s).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from eideploy.graph.host import class_totals
from eideploy.targets.dynapse2.analog import TAIL_STEPS, AnalogSimulator
from eideploy.targets.dynapse2.board import (
    VirtualBoard,
    drain_seconds,
    monitor_plan,
    run_on_board,
    virtual_samna,
)
from eideploy.targets.dynapse2.board import events as board_events
from eideploy.targets.dynapse2.board import runner as board_runner
from eideploy.targets.dynapse2.board.runner import Session, echo_check
from eideploy.targets.dynapse2.config import read_config
from eideploy.targets.dynapse2.target import load_target

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "digits-dynapse2.pt"
SAMPLES = 24


def _small_core_target(tmp: Path, neurons: int, layout: str) -> Path:
    """The DYNAP-SE2 target with ``neurons`` per core (so that the digits model spreads over
    several chips) and the given chip layout."""
    text = (REPO / "hardware" / "dynapse2.toml").read_text()
    text = text.replace("neurons = 256", f"neurons = {neurons}")
    text = text.replace('layout = "row"', f'layout = "{layout}"')
    path = tmp / f"dynapse2-{neurons}-{layout}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def digits():
    from eideploy.data import load_dataset

    test = load_dataset("digits", "test")
    return test.inputs.numpy()[:SAMPLES], test.labels.numpy()[:SAMPLES]


@pytest.fixture(scope="module")
def one_chip(digits_one_chip_export) -> Path:
    return digits_one_chip_export


@pytest.fixture(scope="module")
def three_chips(tmp_path_factory) -> Path:
    """The digits model on 32-neuron cores: 9 cores on chips 0, 1 and 2 of a 4-chip board."""
    from eideploy.pipeline.export import export_model

    tmp = tmp_path_factory.mktemp("virtual-3")
    out = tmp / "three-chips"
    export_model(SHIPPED, out, target=str(_small_core_target(tmp, 32, "row")))
    return out


@pytest.fixture(scope="module")
def one_chip_run(one_chip, digits):
    x, y = digits
    return run_on_board(one_chip, x, y, virtual=True, progress=False)


def _analog(out: Path, x: np.ndarray):
    return AnalogSimulator(read_config(out / "dynapse2.json")).run(x)


# --------------------------------------------------------------------------- agreement
def test_virtual_board_classifies_like_the_analog_simulator_and_routes_every_event(
        one_chip, one_chip_run, digits):
    x, y = digits
    analog = _analog(one_chip, x)
    result = one_chip_run
    agree = np.mean(result.predictions == analog.predictions())
    assert agree >= 22 / 24, agree
    assert abs(result.accuracy - 100.0 * np.mean(analog.predictions() == y)) <= 100 * 2 / 24
    assert result.accuracy >= 85.0
    # the readout counts (per class: a class's readout neurons summed) of two independent
    # computations of the same physics
    classes = class_totals(analog.counts, result.counts.shape[1])
    assert np.corrcoef(result.counts.ravel(), classes.ravel())[0, 1] > 0.97
    routing = result.routing
    assert routing["unrouted"] == 0 and routing["tag_collisions"] == 0
    assert routing["host_events"] == result.events_sent > 0
    # every readout spike reaches the host; a few leave after the counting window
    assert routing["to_host"] == result.events_received
    assert result.events_received == result.counts.sum() + result.ignored_events
    assert result.ignored_events <= 0.01 * result.events_received
    assert routing["late_host_events"] == 0


def test_a_model_spread_over_three_chips_routes_across_chips_as_on_one(three_chips, digits):
    x, y = digits
    config = read_config(three_chips / "dynapse2.json")
    assert [c["id"] for c in config["chips"]] == [0, 1, 2]
    hops = {(e["x_hop"], e["y_hop"]) for ch in config["chips"] for co in ch["cores"]
            for n in co["neurons"] for e in n["sram"]}
    assert {(1, 0), (2, 0), (-2, 0)} & hops  # spikes cross chips in a row
    result = run_on_board(three_chips, x[:12], y[:12], virtual=True, progress=False)
    analog = _analog(three_chips, x[:12])
    assert result.routing["unrouted"] == 0 and result.routing["tag_collisions"] == 0
    assert np.mean(result.predictions == analog.predictions()) >= 11 / 12
    assert result.accuracy >= 75.0


def test_the_router_never_hands_out_the_control_tag(one_chip, three_chips):
    for out in (one_chip, three_chips):
        config = read_config(out / "dynapse2.json")
        tags = {c["tag"] for c in config["input_channels"] if c["tag"] is not None}
        tags |= {e["tag"] for ch in config["chips"] for co in ch["cores"] for n in co["neurons"]
                 for e in (*n["cam"], *n["sram"])}
        assert 2047 not in tags and config["target"]["control_tag"] == 2047
    target = load_target("dynapse2")
    assert target.chip_layout == "row" and 2047 not in target.allocatable_tags
    assert len(target.allocatable_tags) == 2047


def test_monitoring_records_hidden_populations_at_the_analog_simulators_rates(one_chip,
                                                                               digits):
    x, y = digits
    config = read_config(one_chip / "dynapse2.json")
    hidden = sorted({n["population"] for ch in config["chips"] for co in ch["cores"]
                     for n in co["neurons"]} - {config["graph"]["readout"]["population"]})
    result = run_on_board(one_chip, x[:8], y[:8], virtual=True, progress=False,
                          monitor=hidden)
    analog = _analog(one_chip, x[:8])
    # spikes per neuron and sample: the board counts over T + gap steps + the chip's delays, the
    # analog model over T + its tail steps, so the rates (Hz) differ by the windows
    board_window = analog.window + 1e-6 * (
        (board_events.GAP_STEPS - TAIL_STEPS) * board_events.DT_US
        + board_events.latency_us(config))
    for population in hidden:
        expected = float(np.mean(analog.rates[population])) * analog.window
        assert result.rates[population] * board_window == pytest.approx(expected, rel=0.1), \
            population


def test_monitoring_is_refused_clearly_where_the_sram_or_tags_do_not_allow(one_chip):
    config = read_config(one_chip / "dynapse2.json")
    with pytest.raises(ValueError, match="no such on-chip population"):
        monitor_plan(config, ["input"])
    no_spare = json.loads(json.dumps(config))
    no_spare["target"]["sram_reserved"] = 0
    with pytest.raises(ValueError, match="keeps no SRAM entry for monitoring"):
        monitor_plan(no_spare, ["layers.1.exc"])
    few_tags = json.loads(json.dumps(config))
    few_tags["target"]["tags"] = 100
    with pytest.raises(ValueError, match="192 neurons need host tags"):
        monitor_plan(few_tags, ["layers.1.exc"])


def test_echo_test_finds_every_input_channels_first_layer_response(one_chip):
    result = echo_check(one_chip, virtual=True, channels=range(0, 64, 8))
    assert result.channels == 8 and result.ok, result.silent
    assert all(result.responded[c] <= result.expected[c] for c in result.responded)
    assert sum(len(r) for r in result.responded.values()) >= 8


def test_the_drain_is_long_against_the_slowest_drained_time_constant():
    from eideploy.targets.dynapse2 import biases

    tau = biases.leak_tau(biases.bias_current("SOIF_LEAK_N", 5, 255))
    assert tau < 1e-6 and drain_seconds() >= 1e-3  # the floor, far above ln(I_max/I_0) tau


# --------------------------------------------------------------------------- defects caught
def test_host_hops_from_the_fpga_instead_of_chip_0_leave_every_input_off_the_board(
        one_chip, monkeypatch, digits):
    x, y = digits

    def from_the_fpga(config, chip):  # the old HOST_POSITION = (-1, 0)
        positions = board_events.chip_positions(config)
        return positions[chip][0] + 1, positions[chip][1]

    monkeypatch.setattr(board_events, "host_hops", from_the_fpga)
    result = run_on_board(one_chip, x[:6], y[:6], virtual=True, progress=False)
    routing = result.routing
    assert routing["off_board"] == routing["host_events"] == result.events_sent > 0
    assert routing["spikes"] == 0 and result.counts.sum() == 0


def test_a_grid_layout_on_a_board_of_chips_in_a_row_sends_spikes_off_the_board(
        tmp_path, digits):
    from eideploy.pipeline.export import export_model

    x, y = digits
    out = tmp_path / "grid"
    export_model(SHIPPED, out, target=str(_small_core_target(tmp_path, 32, "grid")))
    config = read_config(out / "dynapse2.json")
    assert [c["position"] for c in config["chips"]][2] == [0, 1]
    result = run_on_board(out, x[:4], y[:4], virtual=True, progress=False)
    assert result.routing["off_board"] > 0
    assert result.counts.sum() == 0 and result.accuracy <= 50.0  # the readout chip is unreached
    # the same export on a board laid out as a grid routes everything
    grid_board = VirtualBoard(4, layout="grid")
    fine = run_on_board(out, x[:4], y[:4], samna=virtual_samna(grid_board), progress=False)
    assert fine.routing["unrouted"] == 0 and fine.accuracy >= 75.0


def test_samples_without_a_reset_inherit_the_last_ones_state(one_chip, one_chip_run, digits):
    x, y = digits
    kept = run_on_board(one_chip, x[:6], y[:6], virtual=True, progress=False, reset=False,
                        gap_steps=50)  # the old 50 ms pause
    # after a drain what is left is the synapses' dark current charging the slowest-leak cores
    # during the 100 ms before a sample; without one, most of a threshold's charge
    assert kept.routing["residual_state"] > 0.5
    assert one_chip_run.routing["residual_state"] < 0.5 * kept.routing["residual_state"]


def test_a_stale_end_marker_loses_events_and_this_batchs_marker_does_not(one_chip, digits,
                                                                        monkeypatch):
    x, y = digits
    x, y = x[:4], y[:4]

    def one_at_a_time() -> VirtualBoard:  # a board whose buffer hands out one event per read
        return VirtualBoard(1, events_per_read=1)

    right = run_on_board(one_chip, x, y, samna=virtual_samna(one_at_a_time()), progress=False,
                         poll_s=0.0)
    reference = run_on_board(one_chip, x, y, virtual=True, progress=False)
    assert np.array_equal(right.counts, reference.counts)

    def first_control_ends(self, end_us, seconds, what):  # the old poll()
        out = []
        while True:
            for event in self.board.read_events() or []:
                if self.is_control(event):
                    self.outstanding = 0
                    self.fpga_us = max(self.fpga_us, int(event.timestamp))
                    return out
                out.append(event)

    monkeypatch.setattr(Session, "poll_until", first_control_ends)
    stale = run_on_board(one_chip, x, y, samna=virtual_samna(one_at_a_time()), progress=False,
                         poll_s=0.0)
    assert stale.events_received < 0.5 * right.events_received
    assert stale.accuracy < right.accuracy - 30.0


def test_a_duplicated_tag_shows_as_tag_collisions(one_chip, digits, monkeypatch):
    x, y = digits
    build = board_runner.config_to_samna_configuration

    def duplicating(config, sm, **kwargs):  # a router that gives the E cells one tag
        configuration = build(config, sm, **kwargs)
        exc = next(co for co in config["chips"][0]["cores"] if co["role"] == "exc")
        neurons = [configuration.chips[0].cores[exc["id"]].neurons[n["id"]]
                   for n in exc["neurons"]]
        for neuron in neurons[1:]:
            for entry in neuron.destinations[1:]:
                entry.tag = neurons[0].destinations[1].tag
        return configuration

    monkeypatch.setattr(board_runner, "config_to_samna_configuration", duplicating)
    result = run_on_board(one_chip, x[:4], y[:4], virtual=True, progress=False)
    assert result.routing["tag_collisions"] > 0.1 * result.routing["deliveries"]


def test_an_unknown_chip_layout_in_a_target_file_is_refused(tmp_path):
    from eideploy.targets.dynapse2.target import TargetError

    path = _small_core_target(tmp_path, 256, "ring")
    with pytest.raises(TargetError, match="board.layout"):
        load_target(path)


def test_a_target_keeps_the_layout_and_control_tag_it_was_given():
    target = load_target("dynapse2")
    grid = dataclasses.replace(target, chip_layout="grid")
    from eideploy.targets.dynapse2.route import chip_positions

    assert chip_positions(target) == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert chip_positions(grid) == [(0, 0), (1, 0), (0, 1), (1, 1)]


def test_eideploy_run_on_the_virtual_board_prints_the_report(one_chip):
    from typer.testing import CliRunner

    from eideploy.cli import app

    res = CliRunner().invoke(app, ["run", str(one_chip), "--device", "virtual", "--data",
                                   "digits", "--limit", "4"])
    assert res.exit_code == 0, res.output
    assert "on the virtual DYNAP-SE2 board: accuracy" in res.output
    assert "unrouted 0" in res.output and "layers.3.readout: mean rate" in res.output



def test_eideploy_run_fits_the_board_s_readout_decoder_on_unlabelled_samples(one_chip):
    import json

    from typer.testing import CliRunner

    from eideploy.cli import app

    res = CliRunner().invoke(app, ["run", str(one_chip), "--board", "virtual", "--data",
                                   "digits", "--limit", "6", "--calibrate", "24", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["calibration_samples"] == 24
    # the ideal virtual board: the decoder, fitted to the model's own class totals, decides as
    # the class totals do on these samples but for at most one
    assert abs(doc["decoded_accuracy"] - doc["accuracy"]) <= 100.0 / 6 + 1e-9
    res = CliRunner().invoke(app, ["run", str(one_chip), "--board", "virtual", "--data",
                                   "digits", "--limit", "2", "--calibrate", "8"])
    assert "decided by the board's readout decoder, fitted on 8 unlabelled" in res.output
