"""NIR out and in (docs/nir.md): eideploy -> NIR -> eideploy is the same graph; an snntorch
network written to NIR by snntorch imports, exports to DYNAP-SE2 and predicts what snntorch
predicts (exactly where the neurons' semantics coincide); differences and bad files refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eideploy.cli import app

pytest.importorskip("nir")
pytest.importorskip("h5py")

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "digits-dynapse2.pt"
runner = CliRunner()
T = 8


def _same(a, b) -> None:
    doc_a, arrays_a = a.to_dict()
    doc_b, arrays_b = b.to_dict()
    assert doc_a == doc_b
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        assert arrays_a[key].dtype == arrays_b[key].dtype, key
        assert np.array_equal(arrays_a[key], arrays_b[key]), key


def test_eideploy_to_nir_to_eideploy_gives_the_same_graph(tmp_path):
    from eideploy.pipeline.export import lower_model_file
    from eideploy.pipeline.nir import import_nir

    out = tmp_path / "digits.nir"
    res = runner.invoke(app, ["export", str(MODEL), "--target", "nir", "-o", str(out)])
    assert res.exit_code == 0, res.output
    graph, *_ = lower_model_file(MODEL)
    imported = import_nir(out, tmp_path / "back")
    assert imported.exact and imported.writer == "eideploy"
    _same(graph, imported.graph)
    # the graph directory compiles like the model it came from
    res = runner.invoke(app, ["export", str(tmp_path / "back"), "-o", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output


def test_nir_file_states_the_reset_and_the_divisive_path_fails_unknown_readers(tmp_path):
    import nir

    from eideploy.pipeline.export import lower_model_file
    from eideploy.targets.nir import read_nir_dict, write_nir

    graph, *_ = lower_model_file(MODEL)
    path = write_nir(graph, tmp_path / "digits.nir")
    doc = read_nir_dict(path)
    nodes = doc["nodes"]
    lif = nodes["layers.1.exc"]
    assert lif["type"] == "LIF" and lif["metadata"]["reset"] == "subtract"
    assert lif["metadata"]["spike_test"] == ">="
    assert nodes["layers.1.exc.shunt"]["type"] == "EIDivisiveIntegration"
    assert nodes["layers.1.exc.shunt"]["divisor_inputs"] == "layers.1.div"
    # the subtractive path is signed edges: a Linear of -W_EI
    sub = graph.projections[[p.name for p in graph.projections].index("layers.1.sub")]
    assert np.array_equal(nodes["layers.1.sub"]["weight"], -sub.weight)
    with pytest.raises(Exception):  # noqa: B017 - any loud failure; never a silent drop
        nir.read(path)


def _snntorch_net(beta: float, reset_delay: bool, seed: int = 0):
    import snntorch as snn
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 32, bias=False),
        snn.Leaky(beta=torch.full((32,), beta), threshold=torch.ones(32), init_hidden=True,
                  reset_delay=reset_delay),
        torch.nn.Linear(32, 10, bias=False),
        snn.Leaky(beta=torch.full((10,), beta), threshold=torch.ones(10), init_hidden=True,
                  reset_delay=reset_delay))


def _snntorch_counts(net, spikes: np.ndarray) -> np.ndarray:
    import torch
    from snntorch import utils

    utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(torch.from_numpy(spikes[:, t])) for t in range(T)]
                           ).sum(0).numpy()


def _train(net, spikes: np.ndarray, labels: np.ndarray, epochs: int = 15) -> None:
    import torch
    from snntorch import utils

    xs, ys = torch.from_numpy(spikes), torch.from_numpy(labels)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), 100):
            idx = order[start:start + 100]
            utils.reset(net)
            counts = sum(net(xs[idx, t]) for t in range(T))
            loss = torch.nn.functional.cross_entropy(counts, ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def _write_snntorch_nir(net, path: Path) -> Path:
    import nir
    import torch
    from snntorch.export_nir import export_to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # beta = 1: snntorch divides by 1 - beta
        graph = export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0])
    nir.write(path, graph)
    return path


@pytest.fixture(scope="module")
def digit_spikes(digits_arrays) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits_arrays
    rng = np.random.default_rng(0)  # Bernoulli spike trains of the 8x8 digits, T steps
    spikes = (rng.random((len(x), T, 64)) < x.numpy()[:, None, :]).astype(np.float32)
    return spikes, y.numpy()


def test_snntorch_if_network_imports_spike_for_spike(tmp_path, digit_spikes):
    """beta = 1 with snntorch's default (delayed) subtraction is eideploy's neuron: the imported
    graph's float executor counts the same spikes as snntorch for every digit."""
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    import torch

    from eideploy.graph.execute import FloatExecutor
    from eideploy.pipeline.nir import import_nir

    spikes, _ = digit_spikes
    net = _snntorch_net(1.0, reset_delay=True)
    with torch.no_grad():  # strong enough that most output neurons spike several times
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(4.0)
    theirs = _snntorch_counts(net, spikes)
    path = _write_snntorch_nir(net, tmp_path / "if.nir")
    result = import_nir(path, tmp_path / "graph", T=T, dt=1e-4, reset="subtract-delayed")
    assert result.exact
    counts, _ = FloatExecutor(result.graph).readout_spikes(spikes)
    same = float((counts == theirs).mean())
    print(f"snntorch IF net, {len(spikes)} digits: {100 * same:.2f}% of spike counts equal, "
          f"mean {theirs.mean():.3f} spikes per output neuron")
    assert theirs.sum() > 0 and same == 1.0


def test_snntorch_lif_network_on_dynapse2_integer_simulator_agrees(tmp_path, digit_spikes):
    """A trained snntorch LIF network (beta 0.75, reset_delay=False) through NIR, the command
    line import and export, and the integer simulator of the DYNAP-SE2 export."""
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    from eideploy.graph.execute import FloatExecutor
    from eideploy.pipeline.export import export_graph_of
    from eideploy.sim.integer import IntegerSimulator

    spikes, labels = digit_spikes
    train, test = slice(0, 1400), slice(1400, None)
    net = _snntorch_net(0.75, reset_delay=False)
    _train(net, spikes[train], labels[train])
    theirs = _snntorch_counts(net, spikes[test]).argmax(1)
    path = _write_snntorch_nir(net, tmp_path / "lif.nir")
    res = runner.invoke(app, ["import", str(path), "-o", str(tmp_path / "graph"), "--T", str(T),
                              "--dt", "1e-4", "--reset", "subtract"])
    assert res.exit_code == 0, res.output
    assert "APPROXIMATE" not in res.output and "tau / dt" in res.output
    res = runner.invoke(app, ["export", str(tmp_path / "graph"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    from eideploy.graph.ir import EIGraph

    floats = FloatExecutor(EIGraph.load(tmp_path / "graph")).predict(spikes[test])
    integer = IntegerSimulator(export_graph_of(tmp_path / "out")).predict(spikes[test])
    acc = {k: 100 * float((v == labels[test]).mean())
           for k, v in (("snntorch", theirs), ("float", floats), ("integer", integer))}
    agree_float = 100 * float((floats == theirs).mean())
    agree_int = 100 * float((integer == theirs).mean())
    print(f"snntorch LIF net on {len(theirs)} test digits: accuracy snntorch {acc['snntorch']:.2f}%"
          f", eideploy float {acc['float']:.2f}%, DYNAP-SE2 integer {acc['integer']:.2f}%; "
          f"same class as snntorch: float {agree_float:.2f}%, integer {agree_int:.2f}%")
    assert acc["snntorch"] >= 80.0
    assert agree_float >= 85.0 and agree_int >= 85.0


def test_nir_reset_to_v_reset_is_refused_unless_approximate(tmp_path):
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    path = _write_snntorch_nir(_snntorch_net(0.75, reset_delay=True), tmp_path / "n.nir")
    out = tmp_path / "graph"
    res = runner.invoke(app, ["import", str(path), "-o", str(out), "--T", "8", "--dt", "1e-4"])
    assert res.exit_code == 2
    assert "reset to v_reset" in res.output and "--approximate" in res.output
    assert not out.exists()
    res = runner.invoke(app, ["import", str(path), "-o", str(out)])
    assert res.exit_code == 2 and "--T N --dt SECONDS" in res.output
    res = runner.invoke(app, ["import", str(path), "-o", str(out), "--T", "8", "--dt", "1e-4",
                              "--reset", "subtract-delayed", "--approximate"])
    assert res.exit_code == 0, res.output
    assert "APPROXIMATE" in res.output and "0.25 per spike" in res.output


def _write_dict(path: Path, nodes: dict, edges: list[tuple[str, str]]) -> Path:
    import nir

    class Doc:
        def to_dict(self):
            return {"type": "NIRGraph", "nodes": nodes,
                    "edges": np.array(edges, dtype=object).astype("S"), "metadata": {}}

    nir.write(path, Doc())
    return path


def test_nir_graphs_without_an_ei_form_are_refused_naming_the_node(tmp_path):
    import nir

    def lif(n):
        return nir.LIF(tau=np.full(n, 4e-4), r=np.full(n, 4.0), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n)).to_dict()

    w = np.ones((3, 4))
    nodes = {"in": nir.Input(input_type={"input": np.array([4])}).to_dict(),
             "a": nir.Linear(weight=w).to_dict(), "n": lif(3), "rec": nir.Linear(
                 weight=np.ones((3, 3))).to_dict(),
             "out": nir.Output(output_type={"output": np.array([3])}).to_dict()}
    path = _write_dict(tmp_path / "rec.nir", nodes,
                       [("in", "a"), ("a", "n"), ("n", "rec"), ("rec", "n"), ("n", "out")])
    res = runner.invoke(app, ["import", str(path), "-o", str(tmp_path / "g"), "--T", "4",
                              "--dt", "1e-4", "--reset", "subtract"])
    assert res.exit_code == 2 and "feed-forward chains" in res.output and "'n'" in res.output
    cuba = nir.CubaLIF(tau_syn=np.full(3, 1e-3), tau_mem=np.full(3, 1e-3), r=np.ones(3),
                       v_leak=np.zeros(3), v_threshold=np.ones(3), w_in=np.ones(3)).to_dict()
    nodes = {"in": nodes["in"], "a": nodes["a"], "n": cuba, "out": nodes["out"]}
    path = _write_dict(tmp_path / "cuba.nir", nodes, [("in", "a"), ("a", "n"), ("n", "out")])
    res = runner.invoke(app, ["import", str(path), "-o", str(tmp_path / "g"), "--T", "4",
                              "--dt", "1e-4"])
    assert res.exit_code == 2 and "CubaLIF" in res.output
    # per-neuron time constants: eideploy has one per population
    nodes = {"in": nodes["in"], "a": nodes["a"], "n": lif(3), "out": nodes["out"]}
    nodes["n"]["tau"] = np.array([4e-4, 8e-4, 4e-4])
    path = _write_dict(tmp_path / "tau.nir", nodes, [("in", "a"), ("a", "n"), ("n", "out")])
    res = runner.invoke(app, ["import", str(path), "-o", str(tmp_path / "g"), "--T", "4",
                              "--dt", "1e-4", "--reset", "subtract"])
    assert res.exit_code == 2 and "tau differs between neurons" in res.output


def test_hostile_nir_files_get_a_message_not_a_traceback(tmp_path, monkeypatch):
    import eideploy.targets.nir as tn

    junk = tmp_path / "junk.nir"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    res = runner.invoke(app, ["import", str(junk), "-o", str(tmp_path / "g"), "--T", "4",
                              "--dt", "1e-4"])
    assert res.exit_code == 2 and "cannot be read as a NIR" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["import", str(tmp_path), "-o", str(tmp_path / "g"),
                              "--from", "nir"])
    assert res.exit_code == 2 and "directory" in res.output
    # a dataset larger than the bound is refused before it is read
    monkeypatch.setattr(tn, "MAX_DATASET_ELEMENTS", 10)
    from eideploy.pipeline.export import lower_model_file

    graph, *_ = lower_model_file(MODEL)
    monkeypatch.setattr(tn, "MAX_DATASET_ELEMENTS", 1 << 26)
    path = tn.write_nir(graph, tmp_path / "big.nir")
    monkeypatch.setattr(tn, "MAX_DATASET_ELEMENTS", 10)
    res = runner.invoke(app, ["import", str(path), "-o", str(tmp_path / "g")])
    assert res.exit_code == 2 and "elements (limit 10)" in res.output


def test_missing_nir_package_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nir", None)
    res = runner.invoke(app, ["export", str(MODEL), "--target", "nir", "-o",
                              str(tmp_path / "m.nir")])
    assert res.exit_code == 3 and "eideploy[nir]" in res.output


def test_conv_and_unrolled_sparse_graphs_round_trip_through_nir(tmp_path):
    import torch

    from eideploy.graph.execute import run
    from eideploy.graph.lowering import lower
    from eideploy.graph.unroll import unroll_conv
    from eideploy.networks import build_network
    from eideploy.nn import ei_init
    from eideploy.targets.nir import read_nir, read_nir_dict, write_nir

    torch.manual_seed(0)
    net = build_network("ei-cnn", in_shape=(1, 8, 8), num_classes=10, T=2, layers=[8, "P", 16])
    ei_init(net, torch.rand(32, 1, 8, 8))
    conv = lower(net.eval())
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    for graph, name in ((conv, "conv"), (unroll_conv(conv), "sparse")):
        path = write_nir(graph, tmp_path / f"{name}.nir")
        back = read_nir(path).graph
        _same(graph, back)
        assert np.array_equal(run(graph, x), run(back, x))
    nodes = read_nir_dict(tmp_path / "conv.nir")["nodes"]
    assert nodes["features.0.ee"]["type"] == "Conv2d"
    assert nodes["features.3.ee.pool"]["type"] == "AvgPool2d"  # the pool folded into 3.ee
    assert nodes["features.0.sub"]["type"] == "Conv2d"  # point-wise on a map: a 1x1 kernel
    assert nodes["classifier.ee.flatten"]["type"] == "Flatten"


def test_a_graph_without_extension_nodes_is_plain_nir(tmp_path):
    """An imported snntorch graph written back: identity readout, no SHUNT, no floor
    interneurons, so any NIR reader reads it (and sees the reset stated in the metadata)."""
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    import nir

    from eideploy.pipeline.nir import export_nir, import_nir

    path = _write_snntorch_nir(_snntorch_net(1.0, reset_delay=True), tmp_path / "if.nir")
    import_nir(path, tmp_path / "graph", T=T, dt=1e-4, reset="subtract-delayed")
    out, _ = export_nir(tmp_path / "graph", tmp_path / "back.nir")
    graph = nir.read(out)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds["layer1.exc"] == "IF" and kinds["readout"] == "IF"  # beta = 1: no leak
    assert kinds["layer1.ee"] == "Linear" and kinds["layer1.sub"] == "Linear"
    assert graph.nodes["layer1.exc"].metadata["reset"] == "subtract"
    # and the non-leaky graph compiles for DYNAP-SE2 (leak bias at its smallest code)
    res = runner.invoke(app, ["export", str(tmp_path / "graph"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output


def test_links_out_of_a_nir_file_are_refused(tmp_path):
    import h5py

    (tmp_path / "secret.h5").write_bytes(b"")
    with h5py.File(tmp_path / "secret.h5", "w") as fh:
        fh["data"] = np.arange(3.0)
    path = tmp_path / "link.nir"
    with h5py.File(path, "w") as fh:
        fh["version"] = "1.0"
        node = fh.create_group("node")
        node["type"] = "NIRGraph"
        node["nodes"] = h5py.ExternalLink(str(tmp_path / "secret.h5"), "/")
    res = runner.invoke(app, ["import", str(path), "-o", str(tmp_path / "g"), "--T", "4",
                              "--dt", "1e-4"])
    assert res.exit_code == 2 and "is a link, not an object of the file" in res.output


def test_snntorch_conv_network_imports_spike_for_spike(tmp_path, digit_spikes):
    """Conv2d -> Leaky(beta=1) -> AvgPool2d -> Flatten -> Linear -> Leaky(beta=1) from snntorch:
    the same spikes in the imported graph; DYNAP-SE2's design rules checked on it."""
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    import snntorch as snn
    import torch

    from eideploy.graph.execute import FloatExecutor
    from eideploy.pipeline.nir import import_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, bias=False),
        snn.Leaky(beta=torch.ones(4, 8, 8), threshold=torch.ones(4, 8, 8), init_hidden=True),
        torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False),
        snn.Leaky(beta=torch.ones(10), threshold=torch.ones(10), init_hidden=True))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[4].weight.mul_(3.0)
    spikes = digit_spikes[0].reshape(-1, T, 1, 8, 8)
    theirs = _snntorch_counts(net, spikes)
    import nir
    from snntorch.export_nir import export_to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nir.write(tmp_path / "conv.nir", export_to_nir(net, torch.zeros(1, 1, 8, 8),
                                                       ignore_dims=[0]))
    result = import_nir(tmp_path / "conv.nir", tmp_path / "graph", T=T, dt=1e-4,
                        reset="subtract-delayed")
    ops = {p.name: (p.op, p.attrs) for p in result.graph.projections}
    assert ops["layer1.ee"] == ("conv", {"stride": 1, "padding": 1})
    assert ops["layer2.ee"] == ("dense", {"pool": 2})
    counts, _ = FloatExecutor(result.graph).readout_spikes(spikes)
    same = float((counts == theirs).mean())
    print(f"snntorch conv IF net, {len(spikes)} digits: {100 * same:.2f}% of spike counts "
          f"equal, mean {theirs.mean():.3f} spikes per output neuron")
    assert theirs.mean() > 0.5 and same == 1.0
    # on the chip the pooled Linear reads 4 x 64 neurons: over the 64 CAM entries of a neuron,
    # which the design-rule check says (exit 1) rather than dropping synapses
    res = runner.invoke(app, ["export", str(tmp_path / "graph"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 1 and "exceed 64 CAM entries" in res.output, res.output
