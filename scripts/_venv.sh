# Sourced by scripts/demo and scripts/test: make .venv (Python >= 3.11) and install cellxfer into it.
# Re-installs only when pyproject.toml or the extras changed since the last install.
set -euo pipefail
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "cellxfer needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
    echo "creating .venv with $("$PY" --version)" >&2
    "$PY" -m venv .venv
fi
stamp=.venv/.cellxfer-installed
extras="all,dev"  # the whole suite: every extra that installs from PyPI (not trt/gpu)
# the napari plugin (its own package: napari and Qt stay out of cellxfer's install) and its test extra
napari_plugin="plugins/cellxfer-napari"
want=$( (cat pyproject.toml "$napari_plugin/pyproject.toml"; echo "$extras") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import cellxfer' 2>/dev/null; then
    echo "installing cellxfer and its dependencies into .venv (first time: a few minutes, ~6 GB with torch)" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" >&2 || true
    .venv/bin/python -m pip install --quiet -e ".[$extras]" -e "$napari_plugin[test]" 2>&1 | grep -v "is ignored" >&2 || true
    .venv/bin/python -c 'import cellxfer, torch, timm, onnxruntime, napari, cellxfer_napari' || { echo "install failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
