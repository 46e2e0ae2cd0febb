"""Running an export on a DYNAP-SE2 board (``eideploy.targets.dynapse2.board``).

Everything but the last test runs without a board: samna is classified without being imported,
the samna objects are built from rockpool's pure-Python mirrors and compared with ``samna.json``,
the event encoding and decoding are pure, and ``run_on_board``'s control flow is driven through a
fake samna that echoes events. The last test needs the vendor's samna and a connected board.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import time
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from eideploy.graph.host import Host, class_totals, readout_decision
from eideploy.sim.integer import IntegerSimulator
from eideploy.targets.dynapse2 import board
from eideploy.targets.dynapse2.board import (
    BOARD_METHODS,
    CONTROL_TAG,
    DT_US,
    MODEL_METHODS,
    SAMNA_FIELDS,
    BoardError,
    BoardUnavailable,
    SamnaStatus,
    blank_configuration,
    check_board,
    config_to_samna_configuration,
    decode_counts,
    discovery,
    encode_events,
    find_samna,
    run_on_board,
    runner,
)
from eideploy.targets.dynapse2.config import config_to_graph, read_config
from eideploy.targets.dynapse2.samna import SamnaJsonError, rockpool_mirrors, samna_json

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "digits-dynapse2.pt"
Out = namedtuple("Out", "tag timestamp")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def export_dir(digits_one_chip_export) -> Path:
    """The shipped digits model exported for one chip (small, same mapping as the board)."""
    return digits_one_chip_export


@pytest.fixture(scope="module")
def config(export_dir) -> dict:
    return read_config(export_dir / "dynapse2.json")


@pytest.fixture(scope="module")
def sa():
    return rockpool_mirrors()


@pytest.fixture(scope="module")
def digits_test():
    from eideploy.data import load_dataset

    test = load_dataset("digits", "test")
    return test.inputs.numpy(), test.labels.numpy()


def _package(root: Path, init: str, extension: str | None = None) -> Path:
    """A ``samna`` package under ``root`` whose ``__init__`` leaves a trace if ever run."""
    pkg = root / "samna"
    (pkg / "lib").mkdir(parents=True)
    trace = root / "IMPORTED"
    (pkg / "__init__.py").write_text(f"{init}\nopen({str(trace)!r}, 'w').close()\n"
                                     "raise RuntimeError('samna was imported')\n")
    if extension:
        (pkg / "lib" / extension).write_bytes(b"\x7fELF not really")
    return trace


@pytest.fixture
def samna_path(monkeypatch, tmp_path):
    """``sys.path`` holding only ``tmp_path`` (a samna written there is the only one)."""
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.delitem(sys.modules, "samna", raising=False)
    importlib.invalidate_caches()
    yield tmp_path
    importlib.invalidate_caches()


# --------------------------------------------------------------------------- (a) find_samna
def test_find_samna_reports_absent_when_no_samna_is_on_the_path(samna_path):
    status = find_samna()
    assert status.kind == "absent" and not status.usable and status.path is None


def test_find_samna_recognises_the_pypi_stub_by_its_marker_without_importing_it(samna_path):
    trace = _package(samna_path, "# PYPI_SAMNA: installs the real samna from the vendor index")
    status = find_samna()
    assert status.kind == "stub" and not status.usable
    assert status.path == str(samna_path / "samna")
    assert "PyPI" in status.detail and str(samna_path / "samna") in status.detail
    assert "samna" not in sys.modules and not trace.exists()


def test_find_samna_calls_a_package_with_a_compiled_extension_real_without_importing_it(
        samna_path):
    trace = _package(samna_path, "# the vendor's samna", "samna.cpython-311-x86_64-linux-gnu.so")
    status = find_samna()
    assert status.kind == "real" and status.usable
    assert "samna" not in sys.modules and not trace.exists()


def test_find_samna_refuses_a_stub_even_when_it_carries_a_shared_library(samna_path):
    _package(samna_path, "PYPI_SAMNA = True", "helper.so")
    assert find_samna().kind == "stub"


def test_find_samna_calls_a_samna_without_compiled_code_incomplete(samna_path):
    trace = _package(samna_path, "# some samna.py look-alike")
    status = find_samna()
    assert status.kind == "incomplete" and not status.usable
    assert "samna" not in sys.modules and not trace.exists()


def test_check_board_with_the_stub_names_its_path_and_never_imports_it(samna_path):
    trace = _package(samna_path, "PYPI_SAMNA")
    start = time.perf_counter()
    with pytest.raises(BoardUnavailable) as info:
        check_board()
    assert time.perf_counter() - start < 30.0  # a guard against a hang, not a speed test
    assert str(samna_path / "samna") in str(info.value)
    assert "samna" not in sys.modules and not trace.exists()


def test_run_on_board_refuses_before_reading_anything_when_samna_is_a_stub(samna_path):
    _package(samna_path, "PYPI_SAMNA")
    with pytest.raises(BoardUnavailable, match="stub"):
        run_on_board(samna_path / "no-such-export", np.zeros((1, 64)), np.zeros(1))


# --------------------------------------------------------------------------- (b) check_board
def test_check_board_fails_fast_here_saying_what_to_install_and_how_to_check_the_board():
    start = time.perf_counter()
    with pytest.raises(BoardUnavailable) as info:
        check_board()
    assert time.perf_counter() - start < 30.0  # a guard against a hang, not a speed test
    message = str(info.value)
    assert message.count("\n") >= 5  # several lines: what, install, board, check
    assert "no module named samna" in message
    assert "SynSense" in message and "vendor" in message
    assert "Do not 'pip install samna' from PyPI" in message
    for check in ("USB", "lsusb", "power", "udev", "get_all_devices"):
        assert check in message
    assert isinstance(info.value, RuntimeError)


# --------------------------------------------------------------------------- (c) translation
def test_every_samna_field_and_call_used_exists_on_rockpools_mirrors(sa):
    for cls_name, names in SAMNA_FIELDS.items():
        fields = {f.name for f in dataclasses.fields(getattr(sa, cls_name))}
        assert set(names) <= fields, (cls_name, set(names) - fields)
    assert set(BOARD_METHODS) <= set(dir(sa.Dynapse2Interface))
    assert set(MODEL_METHODS) <= set(dir(sa.Dynapse2Model))


def test_translation_through_the_mirrors_writes_samna_json_byte_for_byte(config, sa, export_dir):
    configuration = config_to_samna_configuration(config, sa)
    text = json.dumps({"value0": configuration.json_wrapper()}, separators=(",", ":"),
                      allow_nan=False) + "\n"
    assert text == samna_json(config)
    assert text == (export_dir / "samna.json").read_text()


def _is_used(entry) -> bool:
    return any(entry.core)


def test_translation_holds_every_neuron_cam_entry_and_bias_code_of_dynapse2_json(config, sa):
    configuration = config_to_samna_configuration(config, sa)
    readout = {(r["chip"], r["core"], r["neuron"]): r["tag"] for r in config["readout_channels"]}
    placed = cam_total = 0
    for chip in config["chips"]:
        for core in chip["cores"]:
            core_obj = configuration.chips[chip["id"]].cores[core["id"]]
            slots = {n["id"]: n for n in core["neurons"]}
            for slot, neuron_obj in enumerate(core_obj.neurons):
                cam = [s for s in neuron_obj.synapses if s.dendrite != sa.Dendrite.none]
                sram = [d for d in neuron_obj.destinations[1:] if _is_used(d)]
                neuron = slots.get(slot)
                if neuron is None:
                    assert not cam and not sram and not _is_used(neuron_obj.destinations[0])
                    continue
                placed += 1
                cam_total += len(cam)
                assert [(s.tag, s.dendrite.name, sum(b << k for k, b in enumerate(s.weight)))
                        for s in cam] == [(e["tag"], e["dendrite"], e["weight_mask"])
                                          for e in neuron["cam"]]
                assert [(sum(b << k for k, b in enumerate(d.core)), d.x_hop, d.y_hop, d.tag)
                        for d in sram] == [(e["core_mask"], e["x_hop"], e["y_hop"], e["tag"])
                                           for e in neuron["sram"]]
                monitor = neuron_obj.destinations[0]
                if (chip["id"], core["id"], slot) in readout:
                    assert (monitor.core, monitor.x_hop, monitor.y_hop, monitor.tag) == (
                        [True] * 4, -7, -7, readout[(chip["id"], core["id"], slot)])
                else:
                    assert not _is_used(monitor)
            for name, code in core["bias_codes"].items():
                param = core_obj.parameters[name]
                assert (param.coarse_value, param.fine_value) == (code["coarse"], code["fine"])
    assert placed == sum(len(c["neurons"]) for ch in config["chips"] for c in ch["cores"])
    assert cam_total == sum(len(n["cam"]) for ch in config["chips"] for c in ch["cores"]
                            for n in c["neurons"])
    assert cam_total > 0 and len(configuration.chips) == config["target"]["chips_per_board"]


def test_translation_into_a_used_configuration_clears_what_the_new_network_does_not_use(
        config, sa):
    base = config_to_samna_configuration(config, sa)
    readout_core = next(c for ch in config["chips"] for c in ch["cores"] if c["role"] == "readout")
    smaller = json.loads(json.dumps(config))
    for chip in smaller["chips"]:
        chip["cores"] = [c for c in chip["cores"] if c["role"] != "readout"]
    smaller["readout_channels"] = []
    again = config_to_samna_configuration(smaller, sa, base=base)
    assert again is base
    cleared = base.chips[0].cores[readout_core["id"]]
    assert all(s.dendrite == sa.Dendrite.none for n in cleared.neurons for s in n.synapses)
    assert not any(_is_used(d) for n in cleared.neurons for d in n.destinations)


def test_translation_refuses_what_samnas_objects_cannot_hold_naming_the_field(config, sa):
    bad = json.loads(json.dumps(config))
    bad["chips"][0]["cores"][1]["neurons"][3]["cam"][0]["tag"] = 4096
    with pytest.raises(SamnaJsonError, match=r"chips\[0\]\.cores\[1\]\.neurons\[3\]\.cam\[0\]"):
        config_to_samna_configuration(bad, sa)


# --------------------------------------------------------------------------- (d) events
@pytest.fixture(scope="module")
def host_run(config, digits_test):
    """40 test digits: the host's input spikes and the integer simulator's readout counts."""
    graph = config_to_graph(config)
    x = digits_test[0][:40]
    host = Host(graph)
    spikes = host.spikes(x)
    spikes = np.broadcast_to(spikes, (graph.T, *spikes.shape[1:]))
    return graph, x, spikes, IntegerSimulator(graph).run(x)


def test_encoded_events_are_the_input_spikes_in_time_order_with_the_channels_tags(config,
                                                                                  host_run):
    graph, _, spikes, _ = host_run
    sent = encode_events(config, spikes, DT_US, start_us=123_456)
    flat = spikes.reshape(graph.T, spikes.shape[1], -1)
    channels = {c["tag"]: c for c in config["input_channels"] if c["tag"] is not None}
    routes = np.array([len(c["destinations"]) if c["tag"] is not None else 0
                       for c in sorted(config["input_channels"], key=lambda c: c["channel"])])
    assert len(sent) == int((flat * routes).sum()) > 0
    assert np.all(np.diff(sent.timestamp_us) > 0)
    assert set(sent.tag.tolist()) <= set(channels)
    assert sent.period_us == (graph.T + board.GAP_STEPS) * DT_US
    # every event back to (sample, step, channel): the spikes exactly, and the routes
    rebuilt = np.zeros_like(flat)
    for i in range(len(sent)):
        channel = channels[int(sent.tag[i])]
        offset = int(sent.timestamp_us[i]) - int(sent.sample_start_us[sent.sample[i]])
        assert 0 <= offset < graph.T * DT_US
        rebuilt[offset // DT_US, sent.sample[i], channel["channel"]] += 1
        assert {"chip": int(sent.chip[i]), "core_mask": int(sent.core_mask[i])} in \
            channel["destinations"]
        # hops relative to chip 0 (rockpool's input_channel_map): chip 0's inputs carry (0, 0)
        assert (int(sent.x_hop[i]), int(sent.y_hop[i])) == (0, 0)
    assert np.array_equal(rebuilt, flat)
    assert sent.sample_start_us[0] == 123_456


def test_encoding_refuses_spikes_that_do_not_match_the_input(config, host_run):
    spikes = host_run[2]
    with pytest.raises(ValueError, match="channels"):
        encode_events(config, spikes[:, :, :, :4])
    with pytest.raises(ValueError, match="integer"):
        encode_events(config, spikes * 0.5)


def test_decoding_a_synthesised_stream_gives_back_the_integer_simulators_counts(config,
                                                                              host_run):
    graph, _, spikes, result = host_run
    sent = encode_events(config, spikes, start_us=5_000_000)
    tags = [r["tag"] for r in config["readout_channels"]]  # per readout neuron, in order
    counts = result.counts
    assert counts.sum() > 0
    events = []
    for b, k in zip(*np.nonzero(counts), strict=True):
        for j in range(int(counts[b, k])):  # spread over the stimulus and a little after
            stamp = int(sent.sample_start_us[b]) + (j % (graph.T + 2)) * DT_US + 300 + k
            events.append(Out(tags[k], stamp) if j % 2 else
                          SimpleNamespace(event=SimpleNamespace(tag=tags[k]), timestamp=stamp))
    noise = [Out(CONTROL_TAG, sent.end_us), Out(tags[0], 10), Out(tags[0], sent.end_us + 5),
             Out(0, int(sent.sample_start_us[3]) + 10)]  # control, before, after, input tag
    rng = np.random.default_rng(0)
    stream = [events[i] for i in rng.permutation(len(events))] + noise
    decoded = decode_counts(config, stream, sent)
    counts = class_totals(counts, graph.readout_settings.classes)  # a class's copies summed
    assert np.array_equal(decoded.counts, counts)
    assert decoded.ignored == len(noise)
    assert np.array_equal(decoded.predictions, readout_decision(counts, -decoded.first_spike_us))
    unique = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert np.array_equal(decoded.predictions[unique], result.predictions()[unique])


def test_equal_counts_go_to_the_class_that_spiked_first(config, host_run):
    sent = encode_events(config, host_run[2][:, :2], start_us=0)
    tags = {r["class"]: r["tag"] for r in config["readout_channels"]}
    start = int(sent.sample_start_us[1])
    stream = [Out(tags[7], start + 2000), Out(tags[3], start + 4000), Out(tags[3], start + 900),
              Out(tags[7], start + 5000)]
    decoded = decode_counts(config, stream, sent)
    assert decoded.counts[1, 3] == decoded.counts[1, 7] == 2
    assert decoded.predictions[1] == 3


# --------------------------------------------------------------------------- run_on_board, faked
class FakeBoard:
    """An opened board that bounces control events (x_hop + 1, as the FPGA does) and answers
    every input event of tag ``c`` with a spike of readout class ``c % 10`` 300 us later."""

    def __init__(self, sa, config, silent=False):
        self.sa, self.config, self.silent = sa, config, silent
        self.readout_tag = {r["class"]: r["tag"] for r in config["readout_channels"]}
        self.pending, self.applied, self.written = [], [], 0
        self.bitfile = None
        self.t0 = time.monotonic()

    # Dynapse2Interface
    def configure_opal_kelly(self, bitfile):
        self.bitfile = bitfile
        return True

    def get_model(self):
        return self

    def _bounce(self, events, now=None):
        for e in events:
            if e.event.tag == CONTROL_TAG and not self.silent:
                dest = self.sa.Dynapse2Destination([True] * 4, e.event.x_hop + 1, e.event.y_hop,
                                                   e.event.tag)
                self.pending.append(self.sa.NormalGridEvent(dest, now or e.timestamp))

    def input_interface_write_events(self, stream, events):
        assert stream == 0
        self._bounce(events, int((time.monotonic() - self.t0) * 1e6) + 1_000_000)

    def grid_bus_write_events(self, events):
        for e in events:
            if e.event.tag != CONTROL_TAG:
                self.written += 1
                dest = self.sa.Dynapse2Destination([True] * 4, -6, -7,
                                                   self.readout_tag[e.event.tag % 10])
                self.pending.append(self.sa.NormalGridEvent(dest, e.timestamp + 300))
        self._bounce(events)

    def read_events(self):
        out, self.pending = self.pending, []
        return out

    # Dynapse2Model
    def get_configuration(self):
        return blank_configuration(self.sa, self.config)

    def apply_configuration(self, configuration):
        self.applied.append(configuration)
        return True

    def clear_error_queue(self):
        pass


@pytest.fixture
def fake_samna(monkeypatch, sa, config, tmp_path):
    bitfile = tmp_path / "Dynapse2Stack.bit"
    bitfile.write_bytes(b"bits")
    monkeypatch.setenv(board.BITFILE_ENV, str(bitfile))
    fake = FakeBoard(sa, config)
    closed = []
    device = SimpleNamespace(device_type_name="DYNAP-SE2 Stack", serial_number="0")
    samna = SimpleNamespace(dynapse2=sa, device=SimpleNamespace(
        get_all_devices=lambda: [SimpleNamespace(device_type_name="Speck"), device],
        open_device=lambda d: fake if d is device else None,
        close_device=closed.append))
    monkeypatch.setattr(runner, "find_samna", lambda: SamnaStatus("real", "/fake", "fake samna"))
    monkeypatch.setattr(runner, "import_samna", lambda timeout_s: samna)
    return fake, closed, bitfile


def test_run_on_board_streams_every_sample_and_decodes_the_boards_answer(
        fake_samna, export_dir, config, host_run, digits_test):
    fake, closed, bitfile = fake_samna
    _, x, spikes, _ = host_run
    y = digits_test[1][:40]
    result = run_on_board(export_dir, x, y, progress=False)
    # the fake answers channel c with class c % 10: the expected counts from the spikes alone
    tag_of = {c["channel"]: c["tag"] for c in config["input_channels"]}
    flat = spikes.reshape(spikes.shape[0], spikes.shape[1], -1).sum(axis=0)
    expected = np.zeros((len(x), 10), dtype=np.int64)
    for channel, tag in tag_of.items():
        if tag is not None:
            expected[:, tag % 10] += flat[:, channel].astype(np.int64)
    assert np.array_equal(result.counts, expected)
    assert result.events_sent == fake.written == int(spikes.sum())
    assert result.events_received == result.events_sent and result.ignored_events == 0
    assert result.accuracy == pytest.approx(100.0 * np.mean(result.predictions == y))
    assert set(result.rates) == {"input", config["graph"]["readout"]["population"]}
    assert all(r > 0 for r in result.rates.values())
    assert fake.bitfile == str(bitfile) and closed == [fake]
    # the network, then per sample rockpool's leaky configuration and the network again, the
    # leaky one last: the chip is drained between samples and after the run
    network, leaky = fake.applied[0], fake.applied[-1]
    assert len(fake.applied) == 2 + 2 * len(x)
    assert all(a is network for a in fake.applied[2:-1:2])
    assert all(a is leaky or a.chips[0].cores[0].parameters["SOIF_LEAK_N"].coarse_value == 5
               for a in fake.applied[1::2])
    readout = config["readout_channels"][0]
    monitor = network.chips[0].cores[readout["core"]].neurons[readout["neuron"]].destinations[0]
    assert (monitor.tag, monitor.x_hop, monitor.y_hop) == (readout["tag"], -7, -7)
    assert leaky.chips[0].cores[0].parameters["SOIF_LEAK_N"].coarse_value == 5


def test_run_on_board_gives_up_on_a_silent_board_instead_of_hanging(fake_samna, export_dir,
                                                                  host_run, digits_test):
    fake, closed, _ = fake_samna
    fake.silent = True
    start = time.monotonic()
    with pytest.raises(BoardError, match="did not answer"):
        run_on_board(export_dir, host_run[1][:2], digits_test[1][:2], progress=False,
                     timeout_s=0.3)
    assert time.monotonic() - start < 60 and closed == [fake]  # no hang


def test_a_bounded_samna_call_that_blocks_raises_board_error():
    with pytest.raises(BoardError, match="did not answer within"):
        discovery.bounded("waiting", 0.1, time.sleep, 2)


# --------------------------------------------------------------------------- (e) the board
@pytest.fixture
def connected_board():
    """Skips unless the vendor's samna is installed and sees a DYNAP-SE2 board."""
    status = find_samna()
    if not status.usable:
        pytest.skip(f"no usable samna: {status.detail}")
    try:
        check_board()
    except BoardUnavailable as exc:
        pytest.skip(str(exc).splitlines()[0])


@pytest.mark.board
def test_the_shipped_digits_model_classifies_at_least_90_percent_on_the_chip(
        connected_board, tmp_path, digits_test):
    from eideploy.pipeline.export import export_model

    export_model(SHIPPED, tmp_path / "out", target="dynapse2")
    x, y = digits_test
    result = run_on_board(tmp_path / "out", x, y, progress=False)
    assert result.events_received > 0
    assert result.accuracy >= 90.0, result


def test_eideploy_run_without_samna_exits_3_with_the_message_without_loading_torch(tmp_path):
    """Fast by construction rather than by a clock: the command must answer before it loads
    torch (or any simulator). The timeout only guards against a hang."""
    import subprocess

    probe = ("import sys\n"
             "from eideploy.cli import main\n"
             "try:\n"
             f"    sys.argv = ['eideploy', 'run', {str(tmp_path / 'no-export')!r}, '--device',"
             " 'dynapse2', '--data', 'digits']\n"
             "    main()\n"
             "except SystemExit as exc:\n"
             "    code = exc.code\n"
             "else:\n"
             "    code = 0\n"
             "sys.stderr.write(f'\\nloaded torch: {\"torch\" in sys.modules}\\n')\n"
             "sys.exit(code)\n")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120)
    if find_samna().usable:
        pytest.skip("a real samna is installed here")
    assert res.returncode == 3, res.stderr
    assert "samna" in res.stderr and "pip install samna" in res.stderr and "lsusb" in res.stderr
    assert "loaded torch: False" in res.stderr


def test_a_step_with_more_events_than_microseconds_shares_them_within_its_first_half(config):
    """784-pixel inputs send more events in one step than a step has microseconds: they share
    microseconds, in order, and all leave in the first half of their step."""
    n_in = len(config["input_channels"])
    spikes = np.full((2, 1, n_in), 20.0)  # 20 spikes per channel and step
    events = encode_events(config, spikes, dt_us=1000)
    per_step = np.bincount(events.timestamp_us // 1000)
    assert per_step[:2].sum() == events.timestamp_us.size and per_step[0] > 1000
    within = events.timestamp_us % 1000
    assert within.max() < 500
    assert np.all(np.diff(events.timestamp_us) >= 0)
    sparse = encode_events(config, np.ones((2, 1, n_in)), dt_us=1000)  # few: 1 us apart
    assert np.array_equal(np.diff(sparse.timestamp_us[:n_in]), np.ones(n_in - 1))
