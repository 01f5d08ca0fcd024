#!/usr/bin/env bash
# Build benchmarks/.flower-venv: Flower's Ray simulation for benchmarks/backends.py.
#
# Flower pins protobuf<7 and rich<15, which fedsys's own environment cannot take, so
# Flower gets a virtual environment of its own. torch==2.13.0 installs from local disk,
# the same build fedsys uses, so both sides run the same kernels. Idempotent: an
# existing environment that already imports flwr and ray is kept.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.flower-venv"
python="${PYTHON:-python3}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import flwr, ray, torch" 2>/dev/null; then
    echo "flower venv ready: $venv"
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet "torch==2.13.0" "numpy==2.4.6" "scikit-learn==1.9.1" \
    "flwr[simulation]==1.42.0"
"$venv/bin/python" -c "import flwr, ray, torch; print('flower venv ready:', flwr.__version__, ray.__version__, torch.__version__)"
