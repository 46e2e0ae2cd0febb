"""A DYNAP-SE2 target as data: the resources of one board, read from a TOML file.

The shipped descriptions live in the repository's ``hardware/`` folder (``dynapse2.toml``, the real
Stack board; ``tiny.toml``, a fictional one-chip target for tests). They are found through
``eideploy.resources`` (inside the package for a wheel, the repository's folder for a checkout or
an editable install); a file anywhere else is loaded by its path. Every stage that needs a
number about the chip (the DRC, placement, routing, quantization, bias translation) reads it
from a ``Target``, never from a constant of its own.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...resources import hardware_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["Target", "TargetError", "load_target", "resolve_target", "known_targets",
           "HARDWARE_DIR",
           "TARGET_FORMAT", "TARGET_FORMAT_VERSION", "CHIP_LAYOUTS"]

TARGET_FORMAT = "eideploy-target"
#: Board layouts of the chips (``route.chip_positions``).
CHIP_LAYOUTS = ("row", "grid")
TARGET_FORMAT_VERSION = 1
# The shipped descriptions: inside the package for a wheel, the repository's hardware/ otherwise.
HARDWARE_DIR = hardware_dir()
_BIAS_NAME = re.compile(r"^[A-Z0-9]+(_[A-Z0-9]+)*$")
_GRAPH_KINDS = ("exc", "sub", "div")


class TargetError(ValueError):
    """A target that does not exist or a target file that is malformed."""


@dataclass(frozen=True)
class Target:
    """The resources of one DYNAP-SE2 board (or a fictional variant), all counts per unit."""

    name: str
    description: str
    source: str  # the file it was read from
    board: str
    chips_per_board: int
    cores_per_chip: int
    core_grid: tuple[int, int]  # rows x columns of cores on a chip
    neurons_per_core: int
    cam_entries_per_neuron: int  # fan-in, shared by every dendrite type
    sram_entries_per_neuron: int  # fan-out destinations, including the reserved ones
    sram_reserved: int  # kept for monitoring a neuron from the host
    tags: int
    tag_bits: int
    hop_range: tuple[int, int]
    base_weights_per_core: int
    weight_mask_bits: int
    delay_classes: int
    # Mappings are plain dicts (picklable for worker processes); treat them as read-only.
    dendrites: dict[str, int] = field(hash=False)  # dendrite name -> samna enum value
    kind_dendrites: dict[str, str] = field(hash=False)  # graph kind -> dendrite name
    bias_names: tuple[str, ...] = field(default=(), repr=False)  # per-core bias currents
    # chip-global or shared by a pair of cores
    chip_bias_names: tuple[str, ...] = field(default=(), repr=False)
    weight_biases: tuple[str, ...] = field(default=(), repr=False)
    delay_biases: tuple[str, ...] = field(default=(), repr=False)
    rockpool_bias_names: dict[str, str] = field(default_factory=dict, hash=False, repr=False)
    #: Chip positions on the board: "row" (chip k at (k, 0), rockpool's ``CHIP_POS``) or
    #: "grid" (the smallest square grid, row-major); ``route.chip_positions`` lays them out.
    chip_layout: str = "row"
    #: A tag reserved for the host's control events (never allocated to a source), or None.
    control_tag: int | None = None

    # ---- derived counts
    @property
    def neurons_per_chip(self) -> int:
        return self.neurons_per_core * self.cores_per_chip

    @property
    def cores_per_board(self) -> int:
        return self.cores_per_chip * self.chips_per_board

    @property
    def neurons_per_board(self) -> int:
        return self.neurons_per_chip * self.chips_per_board

    @property
    def usable_sram(self) -> int:
        """Fan-out destinations left for the network once the monitoring entry is reserved."""
        return self.sram_entries_per_neuron - self.sram_reserved

    @property
    def allocatable_tags(self) -> list[int]:
        """The tags the router may give sources: all but the reserved control tag."""
        return [t for t in range(self.tags) if t != self.control_tag]

    @property
    def weight_levels(self) -> int:
        """Distinct non-zero weights one core can express: sums of a non-empty subset of the base
        weights selected by the CAM entry's mask (15 for 4 base weights)."""
        return 2 ** self.weight_mask_bits - 1

    # ---- look-ups
    def dendrite(self, kind: str) -> str:
        """The dendrite carrying a projection of graph kind ``exc`` / ``sub`` / ``div``."""
        try:
            return self.kind_dendrites[kind]
        except KeyError:
            raise KeyError(f"target {self.name}: no dendrite for projection kind {kind!r}; "
                           f"known kinds: {', '.join(self.kind_dendrites)}") from None

    def dendrite_code(self, kind: str) -> int:
        """samna's ``Dendrite`` enum value for a projection kind."""
        return self.dendrites[self.dendrite(kind)]

    def rockpool_bias_name(self, name: str) -> str:
        """The spelling of a bias name in rockpool's lookup tables (it differs for the delays)."""
        return self.rockpool_bias_names.get(name, name)

    def with_chips(self, chips: int) -> Target:
        """The same target on a board carrying ``chips`` chips (the CLI's ``--chips N``)."""
        if not isinstance(chips, int) or isinstance(chips, bool) or chips < 1:
            raise TargetError(f"target {self.name}: chips must be a positive integer, got "
                              f"{chips!r}")
        return dataclasses.replace(self, chips_per_board=chips)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (for manifests and reports), derived counts included."""
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            doc[f.name] = value
        doc.update(neurons_per_chip=self.neurons_per_chip, cores_per_board=self.cores_per_board,
                   neurons_per_board=self.neurons_per_board, usable_sram=self.usable_sram,
                   weight_levels=self.weight_levels)
        return doc


def known_targets() -> list[str]:
    """Names of the shipped targets (the ``*.toml`` files in ``hardware/``)."""
    if not HARDWARE_DIR.is_dir():
        return []
    return sorted(p.stem for p in HARDWARE_DIR.glob("*.toml"))


def load_target(name_or_path: str | Path) -> Target:
    """Load a shipped target by name (``"dynapse2"``, ``"tiny"``) or any target file by path.

    Raises ``TargetError`` (a ``ValueError``) naming the file and the field for a malformed file,
    and listing the known names for an unknown one.
    """
    text = str(name_or_path)
    known = known_targets()
    if isinstance(name_or_path, str) and text in known:
        path = HARDWARE_DIR / f"{text}.toml"
    elif isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise TargetError(f"{path}: no such target file")
    else:
        where = (f"known targets: {', '.join(known)}" if known else
                 f"no shipped targets were found in {HARDWARE_DIR}")
        raise TargetError(f"unknown target {text!r}; {where}; or pass the path of a target "
                          ".toml file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: cannot be read ({exc})") from None
    return _parse(doc, str(path))


# --------------------------------------------------------------------------- parsing
class _Reader:
    """Typed access to a TOML document that names the file and dotted field in every error."""

    def __init__(self, doc: dict[str, Any], source: str) -> None:
        self.doc = doc
        self.source = source
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> TargetError:
        return TargetError(f"{self.source}: field '{key}' {message}")

    def get(self, key: str) -> Any:
        node: Any = self.doc
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise self.fail(key, "is missing")
            node = node[part]
        self.used.add(key)
        return node

    def string(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, minimum: int = 1) -> int:
        value = self.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(key, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def int_pair(self, key: str, minimum: int | None = None) -> tuple[int, int]:
        value = self.get(key)
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                or (minimum is not None and min(value) < minimum)):
            lower = "" if minimum is None else f" >= {minimum}"
            raise self.fail(key, f"must be a list of two integers{lower}, got {value!r}")
        return int(value[0]), int(value[1])

    def names(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"must be a list of strings, got {value!r}")
        bad = [v for v in value if not _BIAS_NAME.match(v)]
        if bad:
            raise self.fail(key, f"holds names that are not bias names (UPPER_CASE): {bad}")
        if len(set(value)) != len(value):
            dup = sorted({v for v in value if value.count(v) > 1})
            raise self.fail(key, f"lists names twice: {dup}")
        return tuple(value)

    def table(self, key: str) -> dict[str, Any]:
        value = self.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {value!r}")
        return value

    def check_unknown(self, tables: dict[str, tuple[str, ...] | None]) -> None:
        """Refuse keys this version does not read: a typo must not silently keep a default."""
        for key in self.doc:
            if key not in tables:
                raise self.fail(key, f"is not a target field; known top-level fields: "
                                     f"{', '.join(sorted(tables))}")
        for section, fields in tables.items():
            value = self.doc.get(section)
            if isinstance(value, dict) and fields is not None:
                for key in value:
                    if key not in fields:
                        known = ", ".join(fields)
                        raise self.fail(f"{section}.{key}",
                                        f"is not a target field; [{section}] holds {known}")


_FIELDS: dict[str, tuple[str, ...] | None] = {  # None: a table of free keys
    "format": (), "format_version": (), "name": (), "description": (),
    "board": ("name", "chips", "layout"),
    "chip": ("cores", "core_grid"),
    "core": ("neurons", "delay_classes"),
    "neuron": ("cam_entries", "sram_entries", "sram_reserved"),
    "routing": ("tags", "tag_bits", "hop_range", "control_tag"),
    "weights": ("base_per_core", "mask_bits"),
    "dendrites": None,
    "kinds": _GRAPH_KINDS,
    "biases": ("per_core", "chip", "weights", "delays", "rockpool_names"),
    "analog": None,  # circuit constants of the analog model, read by biases.py
    "energy": None,  # per-event energy figures of the cost estimate, read by energy.py
}


def _parse(doc: dict[str, Any], source: str) -> Target:
    r = _Reader(doc, source)
    if r.get("format") != TARGET_FORMAT:
        raise r.fail("format", f"must be {TARGET_FORMAT!r}, got {doc.get('format')!r}: "
                               "not an eideploy target file")
    version = r.integer("format_version")
    if version > TARGET_FORMAT_VERSION:
        raise r.fail("format_version", f"is {version}, newer than this eideploy reads "
                                       f"({TARGET_FORMAT_VERSION}); upgrade eideploy")

    cores_per_chip = r.integer("chip.cores")
    core_grid = r.int_pair("chip.core_grid", minimum=1)
    if core_grid[0] * core_grid[1] != cores_per_chip:
        raise r.fail("chip.core_grid", f"is {list(core_grid)}, which does not hold "
                                       f"chip.cores = {cores_per_chip} cores")
    sram_entries = r.integer("neuron.sram_entries")
    sram_reserved = r.integer("neuron.sram_reserved", minimum=0)
    if sram_reserved >= sram_entries:
        raise r.fail("neuron.sram_reserved", f"is {sram_reserved}, which leaves no usable SRAM "
                                             f"entry of neuron.sram_entries = {sram_entries}")
    tags = r.integer("routing.tags")
    tag_bits = r.integer("routing.tag_bits")
    if tags > 2 ** tag_bits:
        raise r.fail("routing.tags", f"is {tags}, more than routing.tag_bits = {tag_bits} bits "
                                     f"can address ({2 ** tag_bits})")
    control_tag = r.get("routing.control_tag") if "control_tag" in r.table("routing") else None
    if control_tag is not None and (not isinstance(control_tag, int)
                                    or isinstance(control_tag, bool)
                                    or not 0 <= control_tag < tags):
        raise r.fail("routing.control_tag", f"must be a tag in 0..{tags - 1}, got "
                                            f"{control_tag!r}")
    layout = r.get("board.layout") if "layout" in r.table("board") else "row"
    if layout not in CHIP_LAYOUTS:
        raise r.fail("board.layout", f"must be one of {', '.join(CHIP_LAYOUTS)}, got "
                                     f"{layout!r}")
    hop_range = r.int_pair("routing.hop_range")
    if hop_range[0] > hop_range[1]:
        raise r.fail("routing.hop_range", f"must be [low, high] with low <= high, got "
                                          f"{list(hop_range)}")
    base_weights = r.integer("weights.base_per_core")
    mask_bits = r.integer("weights.mask_bits")
    if mask_bits != base_weights:
        raise r.fail("weights.mask_bits", f"is {mask_bits}, but the mask has one bit per base "
                                          f"weight (weights.base_per_core = {base_weights})")

    dendrites: dict[str, int] = {}
    for key, value in r.table("dendrites").items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise r.fail(f"dendrites.{key}", f"must be a non-negative integer (samna's enum "
                                             f"value), got {value!r}")
        dendrites[key] = value
    r.table("kinds")
    kind_dendrites: dict[str, str] = {}
    for kind in _GRAPH_KINDS:
        value = r.get(f"kinds.{kind}")
        if value not in dendrites:
            raise r.fail(f"kinds.{kind}", f"must name a dendrite of [dendrites] "
                                          f"({', '.join(dendrites)}), got {value!r}")
        kind_dendrites[kind] = value

    per_core = r.names("biases.per_core")
    chip_biases = r.names("biases.chip") if "chip" in r.table("biases") else ()
    weight_biases = r.names("biases.weights")
    delay_biases = r.names("biases.delays")
    if len(weight_biases) != base_weights:
        raise r.fail("biases.weights", f"lists {len(weight_biases)} names for "
                                       f"weights.base_per_core = {base_weights} base weights")
    delay_classes = r.integer("core.delay_classes")
    if len(delay_biases) != delay_classes - 1:
        raise r.fail("biases.delays", f"lists {len(delay_biases)} names; core.delay_classes = "
                                      f"{delay_classes} needs {delay_classes - 1} (class 0 has "
                                      "no delay)")
    for key, names in (("biases.weights", weight_biases), ("biases.delays", delay_biases)):
        missing = [n for n in names if n not in per_core]
        if missing:
            raise r.fail(key, f"names biases that are not in biases.per_core: {missing}")
    both = sorted(set(per_core) & set(chip_biases))
    if both:
        raise r.fail("biases.chip", f"repeats per-core biases: {both}")
    rockpool_names: dict[str, str] = {}
    if "rockpool_names" in r.table("biases"):
        for key, value in r.table("biases.rockpool_names").items():
            if key not in per_core + chip_biases or not isinstance(value, str):
                raise r.fail(f"biases.rockpool_names.{key}", "must map a listed bias name to "
                                                             f"rockpool's spelling, got {value!r}")
            rockpool_names[key] = value

    target = Target(
        name=r.string("name"),
        description=r.string("description"),
        source=source,
        board=r.string("board.name"),
        chips_per_board=r.integer("board.chips"),
        cores_per_chip=cores_per_chip,
        core_grid=core_grid,
        neurons_per_core=r.integer("core.neurons"),
        cam_entries_per_neuron=r.integer("neuron.cam_entries"),
        sram_entries_per_neuron=sram_entries,
        sram_reserved=sram_reserved,
        tags=tags,
        tag_bits=tag_bits,
        hop_range=hop_range,
        base_weights_per_core=base_weights,
        weight_mask_bits=mask_bits,
        delay_classes=delay_classes,
        dendrites=dendrites,
        kind_dendrites=kind_dendrites,
        bias_names=per_core,
        chip_bias_names=chip_biases,
        weight_biases=weight_biases,
        delay_biases=delay_biases,
        rockpool_bias_names=rockpool_names,
        chip_layout=layout,
        control_tag=control_tag,
    )
    r.check_unknown(_FIELDS)
    return target


def resolve_target(target: str | Path | Target = "dynapse2", chips: int | None = None) -> Target:
    """A ``Target`` from a name, a path or a ``Target``; ``chips`` limits the board to N chips
    (at most the board's own: an export's loaders check it against the shipped target)."""
    resolved = target if isinstance(target, Target) else load_target(target)
    if chips is not None:
        if not isinstance(chips, bool) and isinstance(chips, int) and \
                chips > resolved.chips_per_board:
            raise TargetError(f"target {resolved.name}: the board carries "
                              f"{resolved.chips_per_board} chip(s); --chips {chips} asks for more "
                              "(--chips may only narrow it; a larger board needs its own target "
                              "file)")
        resolved = resolved.with_chips(chips)
    return resolved
