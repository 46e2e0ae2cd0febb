"""Is a usable samna installed, and does it see a DYNAP-SE2 board? Found without importing it.

The samna on PyPI is a stub that installs packages when imported (spec/dynapse2.md §4), so it is
recognised *without importing it*: ``importlib.util.find_spec`` (a top-level spec executes
nothing), then the package directory is read: a compiled extension and no ``PYPI_SAMNA`` marker
is the vendor's samna; anything else is refused with :class:`BoardUnavailable`, whose message
says what to install from where and how to check the board. :func:`bounded` runs a samna call
under a deadline, so a silent board raises :class:`BoardError` instead of hanging.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["BoardError", "BoardUnavailable", "SamnaStatus", "find_samna", "check_board",
           "import_samna", "find_board", "bounded", "unavailable", "bitfile", "BITFILE_ENV"]

#: Environment variable naming the Stack board's FPGA bitfile when rockpool's is not installed.
BITFILE_ENV = "EIDEPLOY_DYNAPSE2_BITFILE"
_EXTENSIONS = tuple(sorted({*importlib.machinery.EXTENSION_SUFFIXES, ".so", ".pyd"}))
_SCAN_LIMIT = 20000  # files looked at in a samna package before giving up (keeps find_samna fast)


# --------------------------------------------------------------------------- errors
class BoardError(RuntimeError):
    """The board was found but a step failed: a timeout, the FPGA, or samna itself."""


class BoardUnavailable(BoardError):
    """No usable samna or no DYNAP-SE2 board: the message says what is missing and what to do."""


_HOW_TO = """\
To run on the chip:
  1. Install SynSense's samna, the real package with its compiled libraries, as the vendor's
     documentation describes (SynSense's samna docs: install command, package index and the
     Python versions it supports). Do not 'pip install samna' from PyPI: the package there is
     a stub that tries to install other packages when it is imported (if it is installed,
     remove it first: 'pip uninstall samna').
  2. Check the board: the DYNAP-SE2 Stack board powered on and connected by USB to this
     machine ('lsusb' lists its FPGA module, by Opal Kelly); on Linux your user needs access to
     the USB device (the vendor's udev rules, then unplug and replug the board).
  3. Check samna sees it:
       python -c "import samna; print(samna.device.get_all_devices())"
     should list a device whose name contains DYNAP-SE2.
Without a board, 'eideploy simulate' runs the export in the bit-accurate integer simulator."""


def unavailable(what: str) -> BoardUnavailable:
    return BoardUnavailable(f"DYNAP-SE2 board unavailable: {what}\n{_HOW_TO}")


# --------------------------------------------------------------------------- finding samna
@dataclass(frozen=True)
class SamnaStatus:
    """What ``import samna`` would load, found without importing it.

    ``kind``: ``absent`` (nothing), ``stub`` (PyPI's stub: the ``PYPI_SAMNA`` marker),
    ``incomplete`` (a samna without any compiled extension: not the vendor's) or ``real``.
    """

    kind: str
    path: str | None
    detail: str

    @property
    def usable(self) -> bool:
        return self.kind == "real"


def _has_extension(locations: Iterable[str]) -> str | None:
    seen = 0
    for location in locations:
        for root, _dirs, files in os.walk(location):
            for name in files:
                if name.endswith(_EXTENSIONS):
                    return os.path.join(root, name)
                seen += 1
                if seen > _SCAN_LIMIT:
                    return None
    return None


def find_samna() -> SamnaStatus:
    """Classify the samna on ``sys.path`` (module doc); never imports it."""
    try:
        spec = importlib.util.find_spec("samna")
    except (ImportError, ValueError) as exc:  # a broken entry, or sys.modules["samna"] odd
        return SamnaStatus("absent", None, f"samna cannot be located ({exc})")
    if spec is None:
        return SamnaStatus("absent", None, "no module named samna is installed")
    origin = spec.origin if spec.has_location else None
    locations = list(spec.submodule_search_locations or [])
    path = locations[0] if locations else origin
    if origin and origin.endswith(".py"):
        try:
            with open(origin, encoding="utf-8", errors="replace") as fh:
                if "PYPI_SAMNA" in fh.read():
                    return SamnaStatus("stub", path, f"the samna at {path} is PyPI's stub "
                                       "(marker PYPI_SAMNA, no compiled extension): it installs "
                                       "packages when imported, so eideploy never imports it")
        except OSError:
            pass
    if origin and origin.endswith(_EXTENSIONS):
        return SamnaStatus("real", origin, f"samna (compiled module {origin})")
    extension = _has_extension(locations)
    if extension is None:
        return SamnaStatus("incomplete", path, f"the samna at {path} has no compiled extension: "
                                               "it is not SynSense's samna")
    return SamnaStatus("real", path, f"samna at {path} (compiled: {os.path.basename(extension)})")


def check_board(*, board_index: int = 0, timeout_s: float = 20.0) -> None:
    """Raise :class:`BoardUnavailable` unless a real samna is installed and sees a DYNAP-SE2
    board (the ``board_index``-th). Without samna, or with PyPI's stub, this takes milliseconds
    and imports nothing."""
    status = find_samna()
    if not status.usable:
        raise unavailable(status.detail)
    samna = import_samna(timeout_s)
    find_board(samna, board_index, timeout_s)


def import_samna(timeout_s: float) -> Any:
    status = find_samna()  # checked again right before the import: never import the stub
    if not status.usable:
        raise unavailable(status.detail)
    try:
        return bounded("importing samna", timeout_s, importlib.import_module, "samna")
    except BoardError:
        raise
    except Exception as exc:
        raise unavailable(f"samna ({status.path}) is installed but does not import: "
                           f"{type(exc).__name__}: {exc}") from exc


def find_board(samna: Any, board_index: int, timeout_s: float) -> Any:
    """rockpool's ``find_dynapse_boards``: the devices whose type name holds DYNAP-SE2."""
    lister = getattr(samna.device, "get_all_devices", None) or samna.device.get_unopened_devices
    devices = list(bounded("listing samna devices", timeout_s, lister) or [])
    boards = [d for d in devices if "DYNAP-SE2" in str(getattr(d, "device_type_name", "")).upper()]
    if not boards:
        names = ", ".join(str(getattr(d, "device_type_name", d)) for d in devices) or "none"
        raise unavailable(f"samna is installed but finds no DYNAP-SE2 board (devices: {names})")
    if not 0 <= board_index < len(boards):
        raise unavailable(f"board index {board_index} asked for, but samna finds "
                           f"{len(boards)} DYNAP-SE2 board(s)")
    return boards[board_index]


def bounded(what: str, timeout_s: float, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with a deadline: a samna call that blocks raises :class:`BoardError`
    (the call is left in a daemon thread; the board then needs a replug)."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=call, name=f"eideploy-board: {what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise BoardError(f"the board did not answer within {timeout_s:g} s while {what}; "
                         "unplug and replug it (USB and power) and try again")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def bitfile() -> str:
    """The Stack board's FPGA bitfile: ``$EIDEPLOY_DYNAPSE2_BITFILE`` or rockpool's
    ``SE2_STACK_FPGA_FILEPATH``; :class:`BoardUnavailable` when neither is a file."""
    path = os.environ.get(BITFILE_ENV)
    if not path:
        try:
            from rockpool.devices.dynapse.lookup import SE2_STACK_FPGA_FILEPATH as path
        except ImportError:
            path = ""
    if not path or not os.path.isfile(path):
        raise unavailable(f"the Stack board's FPGA bitfile (Dynapse2Stack.bit) is not found "
                          f"({path or 'rockpool does not ship it'}); set {BITFILE_ENV} to the "
                          "bitfile from SynSense")
    return path
