#!/usr/bin/env bash
# GPU check of the E-I training step (issue 18, item 5): E-I vs BN-SNN on VGG-8 and ResNet-18,
# bfloat16 autocast and fp32, batch 64, T=4, with the machine's own torch (no installs).
# Under 7 minutes on one H200 (the analog step up to 4); compare with
# benchmarks/results/cuda_{fp32,amp}.md (fp32: E-I/BN 1.70x VGG-8, 1.86x ResNet-18).
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh     # results land in $OUT (default: a temp dir)
#
# Steps: (1) the imports the benchmark needs, without pydantic, rockpool or typer; (2) the fused
# E-I circuit against its op-by-op reference on the GPU in float64 (values and gradients), on a
# map above and one below the matmul threshold; (3) the two benchmark runs, each under a time
# limit so that one slow run cannot eat the whole budget; (4) the analog simulator's torch
# backend on the GPU against the CPU integrators (benchmarks/analog_gpu.py).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"
PY="${PYTHON:-python3}"

echo "== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 60 "$PY" - <<'PYEOF'
import importlib.abc
import sys


class Block(importlib.abc.MetaPathFinder):
    """Fail loudly if the benchmark's imports reach a package the GPU machine lacks."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("pydantic", "rockpool", "typer", "samna"):
            raise ImportError(f"benchmark import chain needs {name}")


sys.meta_path.insert(0, Block())
import torch  # noqa: E402

import eideploy.networks  # noqa: E402,F401
import eideploy.nn  # noqa: E402,F401
from eideploy.nn import functional as EF  # noqa: E402

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name(0)}; imports ok without pydantic/rockpool/typer")

# The fused circuit against the reference on the GPU, float64 (tests/test_fused.py on CPU).
dev = torch.device("cuda")
gen = torch.Generator(device="cpu").manual_seed(0)
n_e, n_i = 16, 4
for h, w in ((8, 6), (2, 2)):  # 48 positions: matmul path; 4: 1x1 conv path
    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float64).to(dev).requires_grad_()
    both, w_ei = rand(6, n_e + n_i, h, w), rand(n_e, n_i)
    g_i, g_e, b = rand(n_i), rand(n_e), rand(n_e)
    leaves = (both, w_ei, g_i, g_e, b)
    up = torch.randn(6, n_e, h, w, generator=gen, dtype=torch.float64).to(dev)
    fused = EF.ei_integrate_fused(both, w_ei, g_i, g_e, b, "adaptive", 1e-3, "identity", 1.0)
    ref = EF.ei_integrate(both[:, :n_e], both[:, n_e:], w_ei, g_i, g_e, b)
    torch.testing.assert_close(fused, ref, rtol=1e-10, atol=1e-12)
    for gf, gr in zip(torch.autograd.grad(fused, leaves, up),
                      torch.autograd.grad(ref, leaves, up), strict=True):
        torch.testing.assert_close(gf, gr, rtol=1e-10, atol=1e-12)
print("fused E-I circuit == reference on cuda (float64, values and gradients): ok")
PYEOF

status=0
for mode in fp32 amp; do
    flag=""
    [ "$mode" = amp ] && flag="--amp"
    echo "== train_step $mode"
    # shellcheck disable=SC2086
    if ! timeout 110 "$PY" benchmarks/train_step.py --device cuda --arch vgg8 resnet18 $flag \
            --json "$OUT/cuda_$mode.json" | tee "$OUT/cuda_$mode.md"; then
        echo "train_step $mode failed or ran past 110 s" >&2
        status=1
    fi
done

echo "== analog simulator: the torch backend on the GPU against the CPU integrators"
# the prepared digits case (benchmarks/cases/analog_digits.npz): needs numpy and scipy, and numba
# for the piecewise column; the torch backend must fire the reference's spikes exactly
if ! timeout 240 "$PY" benchmarks/analog_gpu.py run --out "$OUT" | tee "$OUT/analog_gpu.log"; then
    echo "analog_gpu failed or ran past 240 s" >&2
    status=1
fi

echo "== previous results (benchmarks/results)"
for mode in fp32 amp; do
    grep -E '^\| (vgg8|resnet18) ' "benchmarks/results/cuda_$mode.md" | sed "s/^/$mode before: /"
done
echo "results in $OUT"
exit $status
