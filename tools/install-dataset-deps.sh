#!/usr/bin/env bash
# Installs what tools/render-dataset needs: Debian packages (FluidSynth, GM soundfonts, the OpenMSX
# MIDI songs, eSpeak NG, SoX) and a Python venv outside the repository with numpy, mido and
# music21 (whose corpus holds the Bach chorales). Idempotent: when everything is there it only
# checks (well under a second) and changes nothing.
set -euo pipefail
venv="${ROFORMER_DATASET_VENV:-$HOME/.cache/roformer-dataset-venv}"
pkgs=(fluidsynth fluid-soundfont-gm timgm6mb-soundfont openttd-openmsx espeak-ng sox)
py_pkgs=("numpy>=1.24,<3" "mido==1.3.3" "music21==10.5.1")

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "install-dataset-deps: apt-get install ${missing[*]}" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! "$venv/bin/python" - <<'EOF' 2>/dev/null
import mido, music21, numpy
from importlib.metadata import version
assert version("mido") == "1.3.3" and version("music21") == "10.5.1"
EOF
then
  echo "install-dataset-deps: creating the venv $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "${py_pkgs[@]}"
fi
echo "install-dataset-deps: ok (venv $venv)" >&2
