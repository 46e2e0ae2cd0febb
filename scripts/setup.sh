#!/usr/bin/env bash
# Set up eideploy in ./.venv: the pinned CPU torch first (an unpinned torch pulls a multi-GB GPU
# build), then the package with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,onnx,nir]"
# NeuroBench's metrics (the neurobench extra) without its declared heavy dependencies (librosa,
# numba, torchaudio, tonic: never imported by the metrics; torchaudio would fight the torch pin)
.venv/bin/python -m pip install -q --no-deps "neurobench==2.3.0" "snntorch==1.0.0" "tqdm>=4" \
  || echo "note: could not install neurobench; the NeuroBench tests will skip"
# snntorch's NIR export (tests/test_nir.py: snntorch -> NIR -> eideploy) traces with nirtorch
.venv/bin/python -m pip install -q --no-deps "nirtorch==2.6" \
  || echo "note: could not install nirtorch; the snntorch NIR tests will skip"
# Fashion-MNIST comes from Debian's dataset-fashion-mnist package; tests that need it skip without.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will skip"
fi
.venv/bin/python -c "import eideploy, torch; print(f'eideploy {eideploy.__version__} with torch {torch.__version__} ready in .venv')"
