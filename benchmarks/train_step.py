"""Cost of one training step: an E-I network against its BN-SNN baseline, side by side.

The target (issue 18) is an E-I VGG-8 step at most 1.2x the BN-SNN VGG-8 step at the same batch
and T = 4, CPU time on one thread (the paper's implementation is at 2.4x). A step is what the
trainer does per batch: forward, cross-entropy on the time-averaged logits, backward, SGD step
and, for E-I only, the Dale's-law projection (spec §5.3).

Time: the two models are stepped alternately (E-I then BN, BN then E-I on the next iteration) and
the median over ``--iters`` iterations after ``--warmup`` is reported, so that drifts of a shared
machine (other jobs, frequency scaling) hit both columns alike.

On a shared machine, other jobs preempt the OpenMP threads and wall time swings by 2x between
runs; ``--threads 1 --clock cpu`` then measures the CPU time the step itself consumes (process
time, with no idle OpenMP workers to spin), which is what a quiet machine's wall time tracks.

Memory: each model is measured alone in a fresh subprocess, so neither sees the other's tensors
or allocator caches. On CUDA it is ``torch.cuda.max_memory_allocated`` over the training steps.
On CPU (where tracemalloc does not see torch's allocations) it is the peak of live tensor bytes
over one step: the parameters, gradients, momentum buffers and batch alive before the step plus
the highest running sum of the allocations and frees that ``torch.profiler`` records during it
(deterministic, independent of the C allocator). The process's peak resident set over the steps
(``VmHWM``, reset after E-I Init via ``/proc/self/clear_refs``, minus the resident set before the
model was built; ``ru_maxrss`` where the reset is not allowed) is reported alongside: the
operating system's view, including oneDNN scratch space and malloc's retained pages, but it
varies by tens of MiB between identical runs.

    python benchmarks/train_step.py     # CPU default: VGG-8, batch 16; 15 s on 2 idle cores
    python benchmarks/train_step.py --device cuda --arch vgg8 vgg16 resnet18 --amp
    python benchmarks/train_step.py --threads 1 --clock cpu --json step.json   # shared machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from eideploy.networks import build_network
from eideploy.nn import ei_init, project_nonnegative_

ARCHS = ("vgg8", "vgg11", "vgg16", "vgg19", "resnet18")
IN_SHAPE = (3, 32, 32)  # CIFAR-10, as in the paper's VGG-8 comparison
NUM_CLASSES = 10
MIB = 1024.0 * 1024.0


@dataclass
class Row:
    """One architecture's numbers: milliseconds per step and peak MiB, E-I vs BN."""

    arch: str
    ei_ms: float
    bn_ms: float
    time_ratio: float
    ei_ms_iqr: tuple[float, float]
    bn_ms_iqr: tuple[float, float]
    ei_peak_mib: float | None = None
    bn_peak_mib: float | None = None
    memory_ratio: float | None = None
    memory_method: str | None = None
    ei_rss_mib: float | None = None  # CPU only: peak resident set, see the module docstring
    bn_rss_mib: float | None = None


class TrainStep:
    """A model, its SGD optimiser and one fixed batch: ``step()`` is one training iteration."""

    def __init__(self, kind: str, arch: str, batch: int, T: int, device: torch.device,
                 seed: int, amp: bool = False) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.rand(batch, *IN_SHAPE, generator=gen).to(device)
        self.y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen).to(device)
        torch.manual_seed(seed)
        self.model = build_network(f"{kind}-{arch}", in_shape=IN_SHAPE, num_classes=NUM_CLASSES,
                                   T=T).to(device)
        self.ei = kind == "ei"
        if self.ei:
            ei_init(self.model, self.x)
        self.model.train()
        # A small learning rate keeps the weights (and so the spike rates) near their initial
        # state for the whole run: the timing then measures the same network at every iteration.
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9,
                                   weight_decay=5e-4)
        self.device = device
        self.amp = amp

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        # As the trainer does: bfloat16 autocast around the forward pass only.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(self.x).float()
        loss = F.cross_entropy(logits, self.y)
        loss.backward()
        self.opt.step()
        if self.ei:
            project_nonnegative_(self.model)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed_step(self, clock: Callable[[], float]) -> float:
        self.sync()
        start = clock()
        self.step()
        self.sync()
        return clock() - start


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], q[2]


def time_pair(arch: str, args: argparse.Namespace, device: torch.device) -> Row:
    ei = TrainStep("ei", arch, args.batch, args.T, device, args.seed, args.amp)
    bn = TrainStep("bn", arch, args.batch, args.T, device, args.seed, args.amp)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times: dict[str, list[float]] = {"ei": [], "bn": []}
    for i in range(args.warmup + args.iters):
        order = (("ei", ei), ("bn", bn)) if i % 2 == 0 else (("bn", bn), ("ei", ei))
        for name, runner in order:
            elapsed = runner.timed_step(clock)
            if i >= args.warmup:
                times[name].append(elapsed * 1e3)
    ei_ms, bn_ms = statistics.median(times["ei"]), statistics.median(times["bn"])
    return Row(arch, ei_ms, bn_ms, ei_ms / bn_ms, quartiles(times["ei"]), quartiles(times["bn"]))


# --------------------------------------------------------------------------- memory probe
def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _live_bytes(runner: TrainStep) -> int:
    """Bytes of every tensor that outlives a step: parameters, gradients, optimiser state, batch."""
    tensors = [runner.x, runner.y, *runner.model.parameters(), *runner.model.buffers()]
    tensors += [p.grad for p in runner.model.parameters() if p.grad is not None]
    tensors += [t for state in runner.opt.state.values() for t in state.values()
                if torch.is_tensor(t)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def _peak_tensor_bytes(runner: TrainStep) -> int:
    """Live tensor bytes at the high point of one step, from the profiler's allocation records."""
    from torch.profiler import ProfilerActivity, profile

    before = _live_bytes(runner)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        runner.step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    running = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return before + peak


def probe_memory(kind: str, arch: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Peak memory of ``args.memory_steps`` training steps of one model (run in a subprocess)."""
    if device.type == "cuda":
        runner = TrainStep(kind, arch, args.batch, args.T, device, args.seed, args.amp)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.memory_steps):
            runner.step()
        torch.cuda.synchronize(device)
        return {"peak_bytes": torch.cuda.max_memory_allocated(device),
                "method": "torch.cuda.max_memory_allocated"}
    linux = os.path.exists("/proc/self/status")
    before = _current_rss() if linux else 0
    runner = TrainStep(kind, arch, args.batch, args.T, device, args.seed)
    reset = linux and _reset_peak_rss()
    for _ in range(args.memory_steps):
        runner.step()
    if reset:
        rss, rss_method = _peak_rss() - before, "VmHWM - RSS before build"
    else:  # ru_maxrss is in KiB on Linux and in bytes on macOS
        unit = 1 if sys.platform == "darwin" else 1024
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit - before
        rss_method = "ru_maxrss - RSS before build"
    return {"peak_bytes": _peak_tensor_bytes(runner), "rss_bytes": rss,
            "method": "live tensor bytes (torch.profiler)", "rss_method": rss_method}


def memory_in_subprocess(kind: str, arch: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--probe-memory", kind, "--arch", arch,
           "--batch", str(args.batch), "--T", str(args.T), "--device", args.device,
           "--seed", str(args.seed), "--memory-steps", str(args.memory_steps)]
    if args.amp:
        cmd.append("--amp")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe for {kind}-{arch} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report
def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "",
             "| arch | E-I ms/step | BN ms/step | time E-I/BN | E-I peak MiB | BN peak MiB "
             "| memory E-I/BN |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = ("n/a", "n/a", "n/a") if r.memory_ratio is None else (
            f"{r.ei_peak_mib:.0f}", f"{r.bn_peak_mib:.0f}", f"{r.memory_ratio:.2f}x")
        lines.append(f"| {r.arch} | {r.ei_ms:.1f} | {r.bn_ms:.1f} | {r.time_ratio:.2f}x | "
                     f"{mem[0]} | {mem[1]} | {mem[2]} |")
    if rows and rows[0].memory_method:
        lines += ["", f"memory: peak {rows[0].memory_method}"]
        rss = [f"{r.arch} E-I {r.ei_rss_mib:.0f} MiB, BN {r.bn_rss_mib:.0f} MiB "
               f"({r.ei_rss_mib / r.bn_rss_mib:.2f}x)" for r in rows if r.ei_rss_mib]
        if rss:
            lines.append("peak RSS over the steps (VmHWM - RSS before build): " + "; ".join(rss))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--arch", nargs="+", choices=ARCHS, default=["vgg8"])
    p.add_argument("--batch", type=int, default=None,
                   help="batch size (default 16 on CPU, 64 on CUDA)")
    p.add_argument("--T", type=int, default=4, help="time steps (default 4)")
    p.add_argument("--iters", type=int, default=None,
                   help="timed iterations per model (default 15 on CPU, 50 on CUDA)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--memory-steps", type=int, default=2,
                   help="training steps per memory probe, the first one included (0 skips "
                        "memory)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or this process's CPU time (CPU only; see above)")
    p.add_argument("--amp", action="store_true",
                   help="bfloat16 autocast around the forward pass, as the trainer on CUDA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--probe-memory", choices=("ei", "bn"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    cuda = args.device == "cuda"
    args.batch = args.batch or (64 if cuda else 16)
    args.iters = args.iters or (50 if cuda else 15)
    if args.amp and not cuda:
        p.error("--amp is for CUDA (the trainer ignores it on CPU)")
    if cuda and args.clock == "cpu":
        p.error("--clock cpu measures host CPU time: use the wall clock on CUDA")
    if args.batch < 1 or args.iters < 1 or args.T < 1 or args.warmup < 0:
        p.error("--batch, --iters and --T must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.probe_memory:
        print(json.dumps(probe_memory(args.probe_memory, args.arch[0], args, device)))
        return 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    rows = []
    for arch in args.arch:
        row = time_pair(arch, args, device)
        if args.memory_steps > 0:
            ei_mem = memory_in_subprocess("ei", arch, args)
            bn_mem = memory_in_subprocess("bn", arch, args)
            row.ei_peak_mib = ei_mem["peak_bytes"] / MIB
            row.bn_peak_mib = bn_mem["peak_bytes"] / MIB
            row.memory_ratio = ei_mem["peak_bytes"] / bn_mem["peak_bytes"]
            row.memory_method = ei_mem["method"]
            if "rss_bytes" in ei_mem:
                row.ei_rss_mib = ei_mem["rss_bytes"] / MIB
                row.bn_rss_mib = bn_mem["rss_bytes"] / MIB
        rows.append(row)
        print(f"{arch}: E-I {row.ei_ms:.1f} ms, BN {row.bn_ms:.1f} ms, "
              f"{row.time_ratio:.2f}x", file=sys.stderr, flush=True)
    header = (f"Training step, batch {args.batch}, T={args.T}, {args.iters} iterations (median "
              f"{args.clock} time, E-I/BN interleaved), torch {torch.__version__} on {args.device} "
              f"({where}){', bfloat16 autocast' if args.amp else ''}")
    print(markdown(rows, header))
    if args.json:
        record: dict[str, Any] = {
            "device": args.device, "where": where, "torch": torch.__version__,
            "batch": args.batch, "T": args.T, "iters": args.iters, "warmup": args.warmup,
            "clock": args.clock, "amp": args.amp,
            "results": [asdict(r) for r in rows]}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
