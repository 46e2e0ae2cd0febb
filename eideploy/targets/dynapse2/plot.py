"""Plots of a mapped network. ``mapping.png``: where every population sits on the board.

Each chip is drawn at its board position as its grid of cores (2 x 2 on DYNAP-SE2); each core is
a box coloured by the role of the neurons it holds (E, I, readout; grey when unused) and labelled
with its populations (``name[start:stop]``), the neurons used out of the core's slots and the
mean CAM entries (fan-in) per used neuron against the limit.

The bytes are deterministic: matplotlib's Agg renderer through a ``Figure`` of its own (no pyplot
state), a fixed size and dpi, and no metadata (no software version, no date) in the PNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_mapping", "ROLE_COLOURS", "DPI"]

#: Face colours by role; the edge colour is a darker shade of the same hue.
ROLE_COLOURS = {"exc": "#f4a582", "inh": "#92c5de", "readout": "#a6dba0", "unused": "#eeeeee"}
ROLE_NAMES = {"exc": "E (excitatory, LIF)", "inh": "I (interneurons)",
              "readout": "readout (spiking)", "unused": "unused"}
DPI = 100
_CORE_INCHES = 2.6  # side of one core box
_MAX_SLICES = 4  # population slices listed in a box before "+ n more"


def _config_of(compiled_or_config: Any) -> Mapping[str, Any]:
    config = getattr(compiled_or_config, "config", compiled_or_config)
    if not isinstance(config, Mapping) or "chips" not in config or "target" not in config:
        raise TypeError("plot_mapping needs a CompiledNetwork or a dynapse2.json configuration "
                        f"document, got {type(compiled_or_config).__name__}")
    return config


def _board_positions(chips: int, config: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Board position of every chip: the configuration's for used chips, and the router's rule
    (``route.chip_positions``: a square grid, row-major) for the others."""
    columns = max(1, math.ceil(math.sqrt(chips)))
    positions = [(chip % columns, chip // columns) for chip in range(chips)]
    for chip in config["chips"]:
        if "position" in chip and 0 <= int(chip["id"]) < chips:
            x, y = chip["position"]
            positions[int(chip["id"])] = (int(x), int(y))
    return positions


def _label(core: Mapping[str, Any] | None, core_id: int, npc: int, cam_limit: int) -> str:
    if core is None:
        return f"core {core_id}\nunused"
    slices = [f"{p['population']}[{p['start']}:{p['stop']}]" for p in core["populations"]]
    if len(slices) > _MAX_SLICES:
        slices = slices[:_MAX_SLICES - 1] + [f"+ {len(slices) - _MAX_SLICES + 1} more"]
    neurons = core["neurons"]
    used = len(neurons)
    cam = sum(len(n["cam"]) for n in neurons) / used if used else 0.0
    return (f"core {core_id}: {core['role']}\n" + "\n".join(slices) +
            f"\nneurons {used}/{npc} ({100 * used / npc:.0f}%)"
            f"\nCAM mean {cam:.1f}/{cam_limit}")


def plot_mapping(compiled_or_config: Any, path: str | Path) -> Path:
    """Draw the board of a ``CompiledNetwork`` (or of a ``dynapse2.json`` document) to ``path``.

    Returns the path written. Chips of the board that hold nothing are drawn grey, so the picture
    shows how much of the board is left.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    config = _config_of(compiled_or_config)
    target = config["target"]
    chips = int(target["chips_per_board"])
    rows, cols = (int(v) for v in target["core_grid"])
    npc = int(target["neurons_per_core"])
    cam_limit = int(target["cam_entries_per_neuron"])
    positions = _board_positions(chips, config)
    board_x = max(x for x, _ in positions) + 1
    board_y = max(y for _, y in positions) + 1
    cores = {(int(chip["id"]), int(core["id"])): core
             for chip in config["chips"] for core in chip["cores"]}

    gap = 0.45  # between chips, in core units
    width = board_x * cols + (board_x - 1) * gap
    height = board_y * rows + (board_y - 1) * gap
    fig = Figure(figsize=(max(6.0, width * _CORE_INCHES), height * _CORE_INCHES + 1.3),
                 dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.08, 0.96, 0.84))
    ax.set_xlim(-0.1, width + 0.1)
    ax.set_ylim(height + 0.25, -0.1)  # chip row 0 and core row 0 at the top
    ax.set_aspect("equal")
    ax.axis("off")
    roles_seen: list[str] = []
    for chip_id, (bx, by) in enumerate(positions):
        x0, y0 = bx * (cols + gap), by * (rows + gap)
        ax.add_patch(Rectangle((x0 - 0.06, y0 - 0.06), cols + 0.12, rows + 0.12, fill=False,
                               linewidth=1.5, edgecolor="#444444"))
        used = sum(1 for (c, _) in cores if c == chip_id)
        ax.text(x0 + cols / 2, y0 - 0.1, f"chip {chip_id}  (position {bx},{by}; "
                f"{used}/{rows * cols} cores used)", ha="center", va="bottom", fontsize=9,
                fontweight="bold")
        for core_id in range(rows * cols):
            r, c = divmod(core_id, cols)
            core = cores.get((chip_id, core_id))
            role = core["role"] if core is not None else "unused"
            if role not in roles_seen:
                roles_seen.append(role)
            ax.add_patch(Rectangle((x0 + c + 0.04, y0 + r + 0.04), 0.92, 0.92,
                                   facecolor=ROLE_COLOURS.get(role, "#dddddd"),
                                   edgecolor="#555555", linewidth=0.8))
            ax.text(x0 + c + 0.5, y0 + r + 0.5, _label(core, core_id, npc, cam_limit),
                    ha="center", va="center", fontsize=8, linespacing=1.3,
                    color="#222222" if core is not None else "#888888")
    graph = config.get("graph", {}).get("name", "")
    fig.suptitle(f"{graph} on {target['name']}: {len(cores)} of {chips * rows * cols} cores, "
                 f"{sum(len(c['neurons']) for c in cores.values())} neurons", fontsize=11)
    order = [r for r in ("exc", "inh", "readout", "unused") if r in roles_seen]
    order += [r for r in roles_seen if r not in order]
    fig.legend(handles=[Patch(facecolor=ROLE_COLOURS.get(r, "#dddddd"), edgecolor="#555555",
                              label=ROLE_NAMES.get(r, r)) for r in order],
               loc="lower center", ncol=len(order), fontsize=8, frameon=False)
    path = Path(path)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path
