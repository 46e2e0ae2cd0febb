"""The cost of an inference: spikes, synaptic events per dendrite, routed events, energy, latency
(eideploy.pipeline.cost, hardware/dynapse2.toml [energy]), on the shipped digits model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from eideploy.graph import EIGraph
from eideploy.pipeline.cost import (
    CostError,
    cost_markdown,
    cost_report,
    energy_estimate,
    float_cost,
    integer_cost,
)
from eideploy.sim.integer import IntegerSimulator
from eideploy.targets.dynapse2 import load_target
from eideploy.targets.dynapse2.board.events import latency_us
from eideploy.targets.dynapse2.energy import EVENT_KINDS, EnergyError, load_energy


@pytest.fixture(scope="module")
def digits_x() -> np.ndarray:
    d = load_digits()
    return (d.data[:256] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)


@pytest.fixture(scope="module")
def mapped(quantized_digits, digits_x):
    export = quantized_digits.meta["export_dir"]
    return integer_cost(quantized_digits, digits_x, export_dir=export)


# --------------------------------------------------------------------------- energy table
def test_every_event_kind_has_a_figure_a_range_and_a_source():
    table = load_energy()
    assert set(table.figures) == set(EVENT_KINDS)
    for figure in table.figures.values():
        assert figure.low_pj <= figure.pj <= figure.high_pj
        assert len(figure.source) > 20
    # nothing here was checked against the papers: the table must not claim it was
    assert not table.verified and "unverified" in table.note


def test_the_shipped_target_loads_with_its_energy_table():
    assert load_target("dynapse2").name == "dynapse2"


def test_a_figure_outside_its_own_range_is_refused(tmp_path):
    text = "\n".join(f'[energy.{k}]\npj = 10.0\nrange_pj = [1.0, 20.0]\nsource = "a paper"\n'
                     for k in EVENT_KINDS)
    path = tmp_path / "t.toml"
    path.write_text(text.replace("pj = 10.0", "pj = 30.0", 1))
    with pytest.raises(EnergyError, match=r"energy.spike: pj 30.0 is outside range_pj"):
        load_energy(path)
    path.write_text(text.replace('source = "a paper"', 'source = ""', 1))
    with pytest.raises(EnergyError, match="names its source"):
        load_energy(path)


# --------------------------------------------------------------------------- counts
def test_fan_out_is_the_cam_entries_of_the_export(quantized_digits):
    """Every non-zero quantized synapse is one CAM entry on its dendrite: the fan-outs the
    count uses sum to the CAM entries of dynapse2.json, per dendrite."""
    config = json.loads((Path(quantized_digits.meta["export_dir"]) / "dynapse2.json")
                        .read_text())
    cam: dict[str, int] = {}
    for chip in config["chips"]:
        for core in chip["cores"]:
            for neuron in core["neurons"]:
                for entry in neuron["cam"]:
                    cam[entry["dendrite"]] = cam.get(entry["dendrite"], 0) + 1
    sim = IntegerSimulator(quantized_digits)
    synapses: dict[str, int] = {}
    target = load_target("dynapse2")
    for syns in sim.synapses.values():
        for s in syns:
            dendrite = target.dendrite(s.kind)
            synapses[dendrite] = synapses.get(dendrite, 0) + int(np.count_nonzero(s.levels))
    assert synapses == cam


def test_synaptic_events_are_spikes_times_fan_out(quantized_digits, digits_x, mapped):
    """The input projections' events recounted the long way: the host's spikes through the
    projection's binary connection matrix, summed over time and samples."""
    sim = IntegerSimulator(quantized_digits)
    spikes = np.asarray(sim.host.spikes(digits_x), dtype=np.float64)
    spikes = spikes.reshape(spikes.shape[0], spikes.shape[1], -1)
    for proj in quantized_digits.projections_from(quantized_digits.input_settings.population):
        syn = next(s for s in sim.synapses[proj.target] if s.projection == proj.name)
        binary = (abs(syn.matrix) > 0).astype(np.float64)  # (target, source)
        expected = float(np.asarray(binary @ spikes.reshape(-1, spikes.shape[2]).T).sum())
        counted = next(p.events for p in mapped.projections if p.name == proj.name)
        assert counted == pytest.approx(expected / len(digits_x), rel=1e-9)
    total = sum(p.events for p in mapped.projections)
    assert mapped.total_synaptic_events == pytest.approx(total)
    assert set(mapped.synaptic_events) == {"ampa", "gaba", "shunt"}


def test_shipped_digits_events_per_dendrite(mapped):
    """The shipped model's measured cost (docs/cost.md): thousands of spikes, tens of
    thousands of synaptic events per sample, GABA the largest share (interneurons fire counts
    onto every E neuron), SHUNT the smallest; events stay on one chip."""
    assert 1_000 < mapped.total_spikes < 10_000
    assert 30_000 < mapped.total_synaptic_events < 200_000
    events = mapped.synaptic_events
    assert events["gaba"] > events["ampa"] > events["shunt"] > 0
    assert mapped.spikes["input"] > 50
    assert mapped.routed_events is not None and mapped.routed_events > mapped.spikes["input"]
    assert mapped.chip_crossings == 0.0


def test_float_and_integer_counts_agree_where_the_activity_is_the_same(quantized_digits,
                                                                       digits_x, mapped):
    """On the quantized graph, the float executor's synaptic operations from the input (the
    same host spikes, the same synapses) equal the integer count exactly."""
    ops = float_cost(quantized_digits, digits_x)
    source = quantized_digits.input_settings.population
    for proj in quantized_digits.projections_from(source):
        a = next(p.events for p in ops.projections if p.name == proj.name)
        b = next(p.events for p in mapped.projections if p.name == proj.name)
        assert a == pytest.approx(b, rel=1e-9)


def test_conv_projections_are_refused_with_a_clear_error(quantized_digits, digits_x):
    graph = EIGraph.from_dict(*quantized_digits.to_dict())
    graph.projections[0].op = "conv"
    with pytest.raises(CostError, match="op 'conv' is not counted"):
        float_cost(graph, digits_x[:4])


# --------------------------------------------------------------------------- energy, latency
def test_energy_is_the_events_times_the_figures(quantized_digits, mapped):
    export = quantized_digits.meta["export_dir"]
    table = load_energy()
    energy = energy_estimate(mapped, table=table, export_dir=export)
    expected = (mapped.total_spikes * table["spike"].pj
                + mapped.total_synaptic_events * table["synaptic_event"].pj
                + mapped.routed_events * table["routed_event"].pj) * 1e-3
    assert energy.nj == pytest.approx(expected)
    assert energy.low_nj <= energy.nj <= energy.high_nj
    assert energy.low_nj < 0.1 * energy.high_nj  # the sources disagree by over 10x
    config = json.loads((Path(export) / "dynapse2.json").read_text())
    assert energy.latency_us == quantized_digits.T * 1000 + latency_us(config)
    assert energy.latency_us >= quantized_digits.T * 1000


def test_the_report_entry_and_its_markdown(quantized_digits, digits_x):
    export = quantized_digits.meta["export_dir"]
    float_graph = EIGraph.load(export)
    report = cost_report(quantized_digits, digits_x[:64], float_graph=float_graph,
                         export_dir=export)
    json.dumps(report)  # plain data
    assert report["integer"]["samples"] == 64
    assert report["float"]["counted_on"] == "float"
    text = "\n".join(cost_markdown(report))
    assert "## Cost" in text and "GABA" in text and "nJ" in text and "Moradi" in text


def test_the_validation_report_shows_events_and_energy_with_its_source(quantized_digits):
    from eideploy.pipeline.validate import report_markdown, validate_export

    model = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
    report, _ = validate_export(model, quantized_digits.meta["export_dir"], divisions=("exact",),
                                limit=48)
    cost = report["cost"]
    assert cost["integer"]["samples"] == 48
    assert cost["integer"]["synaptic_events"]["gaba"] > 0
    assert cost["float"]["total_synaptic_events"] > 0
    assert 0 < cost["energy"]["low_nj"] <= cost["energy"]["nj"] <= cost["energy"]["high_nj"]
    markdown = report_markdown(report)
    assert "## Cost per inference" in markdown and "nJ per inference" in markdown
    assert "Moradi et al., IEEE TBCAS" in markdown
    json.dumps(report)
    bench = cost["neurobench"]
    try:
        import neurobench  # noqa: F401
    except ImportError:
        assert "eideploy[neurobench]" in bench["skipped"]
    else:  # footprint and sparsity beside the events
        assert "NeuroBench metrics of the float model" in markdown and "footprint" in markdown
        ops = bench["SynapticOperations"]
        assert ops["Effective_ACs"] > 0 and bench["Footprint"] > 0
        assert 0 < bench["ConnectionSparsity"] < 1


def test_inspect_shows_one_cost_line_from_the_validation_report(quantized_digits, digits_x,
                                                                tmp_path):
    import shutil

    from typer.testing import CliRunner

    from eideploy.cli import app

    out = tmp_path / "export"
    shutil.copytree(quantized_digits.meta["export_dir"], out)
    runner = CliRunner()
    res = runner.invoke(app, ["inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert "cost: not measured yet" in res.output
    cost = cost_report(quantized_digits, digits_x[:32], export_dir=out)
    (out / "validation").mkdir()
    (out / "validation" / "report.json").write_text(json.dumps({"cost": cost}))
    res = runner.invoke(app, ["inspect", str(out)])
    assert res.exit_code == 0, res.output
    line = next(s for s in res.output.splitlines() if s.startswith("cost per inference"))
    assert f"{cost['integer']['total_spikes']:.0f} spikes" in line
    assert "GABA" in line and "uJ" in line and "unverified" in line and "latency" in line
    (out / "validation" / "report.json").write_text('{"cost": {"integer": 3}}')
    res = runner.invoke(app, ["inspect", str(out)])
    assert res.exit_code == 0 and "holds no readable cost" in res.output


# --------------------------------------------------------------------------- the report's plot
@pytest.fixture(scope="module")
def validated_cost(quantized_digits, tmp_path_factory) -> Path:
    """``eideploy validate`` on 32 samples, two division modes and the nominal analog chip,
    its report written apart from the shared export: the report directory."""
    from typer.testing import CliRunner

    from eideploy.cli import app

    model = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
    out = tmp_path_factory.mktemp("cost-validation") / "v"
    res = CliRunner().invoke(app, ["validate", str(model), quantized_digits.meta["export_dir"],
                                   "--limit", "32", "--division", "exact", "--division", "shift",
                                   "--trials", "0", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    return out


def test_validate_draws_the_cost_plot_as_a_deterministic_png(validated_cost, tmp_path):
    from eideploy.pipeline.plots import plot_cost

    png = (validated_cost / "cost.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert b"tEXt" not in png  # no metadata: the bytes depend on the numbers only
    assert "(cost.png)" in (validated_cost / "report.md").read_text()
    cost = json.loads((validated_cost / "report.json").read_text())["cost"]
    again = plot_cost(cost, tmp_path / "again.png").read_bytes()
    assert again == plot_cost(cost, tmp_path / "twice.png").read_bytes()


def test_every_variant_is_priced_from_its_own_spikes(validated_cost):
    """integer exact's rates give back the count the report makes from its states; the analog
    chip is priced from its own spikes (all but the host's input), not from the integer count."""
    cost = json.loads((validated_cost / "report.json").read_text())["cost"]
    variants = cost["variants"]
    assert set(variants) == {"integer exact", "integer shift", "analog"}
    exact = variants["integer exact"]
    assert exact["total_synaptic_events"] == pytest.approx(
        cost["integer"]["total_synaptic_events"], rel=1e-9)
    assert exact["nj"] == pytest.approx(cost["energy"]["nj"], rel=1e-9)
    assert variants["analog"]["from_reference"] == ["input"]
    assert variants["analog"]["total_spikes"] != pytest.approx(exact["total_spikes"])
    for entry in variants.values():
        assert 0 < entry["low_nj"] <= entry["nj"] <= entry["high_nj"]
        assert 0 <= entry["accuracy"] <= 100


# --------------------------------------------------------------------------- run's report
def test_run_on_the_virtual_board_reports_energy_and_latency_per_inference(
        digits_one_chip_export):
    from typer.testing import CliRunner

    from eideploy.cli import app

    runner = CliRunner()
    args = ["run", str(digits_one_chip_export), "--board", "virtual", "--data", "digits",
            "--limit", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    line = next(s.strip() for s in res.output.splitlines()
                if s.strip().startswith("energy per inference"))
    assert float(line.split("~")[1].split(" uJ")[0]) > 0
    assert "unverified" in line and "latency 9.2 ms" in line
    assert " GABA" in line and "all counted" in line and "~" not in line.split("uJ")[-1]
    res = runner.invoke(app, [*args, "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    energy, routing = doc["energy"], doc["routing"]
    assert energy["samples"] == 3 and energy["nj"] > 0
    assert energy["events"]["spike"] == pytest.approx(routing["spikes"] / 3)
    assert energy["events"]["routed_event"] == pytest.approx(routing["deliveries"] / 3)
    assert energy["low_nj"] <= energy["nj"] <= energy["high_nj"]


def test_a_real_boards_energy_is_a_lower_bound_from_the_host_events(quantized_digits):
    from eideploy.targets.dynapse2.energy import board_energy, cam_entries_per_delivery

    config = json.loads((Path(quantized_digits.meta["export_dir"]) / "dynapse2.json")
                        .read_text())
    table = load_energy()
    energy = board_energy(config, samples=2, events_sent=300, events_received=100,
                          routing=None, latency_us=9200, table=table)
    per_delivery = cam_entries_per_delivery(config)
    assert per_delivery > 1
    assert energy.events == {"spike": 50.0, "synaptic_event": 150.0 * per_delivery,
                             "routed_event": 150.0, "chip_crossing": 0.0}
    expected = (50 * table["spike"].pj + 150 * per_delivery * table["synaptic_event"].pj
                + 150 * table["routed_event"].pj) * 1e-3
    assert energy.nj == pytest.approx(expected)
    assert "lower bound" in energy.note
    with pytest.raises(EnergyError, match="0 samples"):
        board_energy(config, samples=0, events_sent=0, events_received=0, routing=None,
                     latency_us=0)


# --------------------------------------------------------------------------- the board's counts
def _expected_board_events(config: dict, fired: dict, host_tags: list[int]) -> tuple[dict, int]:
    """Synaptic events per dendrite and chip crossings that the spikes ``fired`` (per (chip,
    core, neuron)) and the host events (their tags) make, read from ``dynapse2.json``: every
    SRAM destination's cores, every CAM entry there holding the event's tag."""
    cam: dict[tuple[int, int, int], dict[str, int]] = {}
    for chip in config["chips"]:
        for core in chip["cores"]:
            for neuron in core["neurons"]:
                for entry in neuron["cam"]:
                    per = cam.setdefault((chip["id"], core["id"], entry["tag"]), {})
                    per[entry["dendrite"]] = per.get(entry["dendrite"], 0) + 1
    events: dict[str, int] = {}
    crossings = 0

    def deliver(chip: int, mask: int, tag: int, times: int) -> None:
        for core in range(4):
            if mask >> core & 1:
                for dendrite, n in cam.get((chip, core, tag), {}).items():
                    events[dendrite] = events.get(dendrite, 0) + times * n

    for chip in config["chips"]:
        for core in chip["cores"]:
            for neuron in core["neurons"]:
                spikes = fired.get((chip["id"], core["id"], neuron["id"]), 0)
                for entry in neuron["sram"]:
                    deliver(entry["chip"], entry["core_mask"], entry["tag"], spikes)
                    crossings += spikes * (entry["chip"] != chip["id"])
    channels = {c["tag"]: c for c in config["input_channels"] if c["tag"] is not None}
    for tag in host_tags:
        for d in channels[tag]["destinations"]:
            deliver(d["chip"], d["core_mask"], tag, 1)
    return events, crossings


def test_the_virtual_board_counts_synaptic_events_from_the_events_it_delivered(
        tmp_path_factory, quantized_digits):
    """The board's synaptic events (CAM matches per dendrite) and chip crossings are the
    spikes it fired and the host events it handled, each times its fan-out in
    ``dynapse2.json``: counted from what was delivered, on a model spread over two chips."""
    from eideploy.pipeline.export import export_model
    from eideploy.targets.dynapse2.board import VirtualBoard, run_on_board, virtual_samna
    from eideploy.targets.dynapse2.board.virtual import CONTROL_TAG

    tmp = tmp_path_factory.mktemp("board-count")
    repo = Path(__file__).resolve().parents[1]
    target = tmp / "dynapse2-64.toml"
    target.write_text((repo / "hardware" / "dynapse2.toml").read_text()
                      .replace("neurons = 256", "neurons = 64"))
    out = tmp / "out"
    export_model(repo / "models" / "digits-dynapse2.pt", out, target=str(target))
    config = json.loads((out / "dynapse2.json").read_text())
    assert len(config["chips"]) >= 2

    board = VirtualBoard(chips=4)
    host_tags: list[int] = []
    write = board.grid_bus_write_events

    def record(events):
        events = list(events)
        host_tags.extend(int(e.event.tag) for e in events if int(e.event.tag) != CONTROL_TAG)
        write(events)

    board.grid_bus_write_events = record
    d = load_digits()
    x = (d.data[-2:] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    result = run_on_board(out, x, d.target[-2:], samna=virtual_samna(board), progress=False)
    routing = result.routing
    assert routing["unrouted"] == 0 and routing["host_events"] == len(host_tags) > 0
    # the spikes fired under the export's configuration (the drain's routes deliver nothing)
    networks = sorted(board._networks.values(), key=lambda net: int(net.fired.sum()))
    main = networks[-1]
    for net in networks[:-1]:
        assert int((net.stats[5:] @ net.fired).sum()) == 0
    fired = {key: int(n) for key, n in zip(main.keys, main.fired, strict=True) if n}
    expected, crossings = _expected_board_events(config, fired, host_tags)
    counted = {k: v for k, v in routing["synaptic_events"].items() if v}
    assert counted == expected
    assert set(expected) == {"ampa", "gaba", "shunt"}
    assert routing["chip_crossings"] == crossings > 0
    # the energy prices these counts, per sample
    energy = result.energy
    assert energy["synaptic_by_dendrite"] == {k: v / 2 for k, v in
                                              routing["synaptic_events"].items()}
    assert energy["events"]["synaptic_event"] == pytest.approx(sum(expected.values()) / 2)
    assert energy["events"]["chip_crossing"] == pytest.approx(crossings / 2)
    assert "counted" in energy["counted"]
