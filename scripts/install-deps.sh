#!/usr/bin/env bash
# Installs the Debian packages vtrain builds and runs with (apt-get only;
# nothing is downloaded from anywhere else). Packages already present are
# not reinstalled, so this is cheap to call before every build.
#
#   scripts/install-deps.sh          build + run: compiler, meson, OpenBLAS
#                                    (OpenMP build), HDF5, FFmpeg, Open MPI
#   scripts/install-deps.sh --test   also Check, ffmpeg/ffprobe, h5py and
#                                    PyTorch (the reference oracle of tests/)
set -euo pipefail

pkgs=(gcc libc6-dev meson ninja-build pkg-config
      libopenblas-openmp-dev libhdf5-dev hdf5-tools
      libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
      libopenmpi-dev openmpi-bin check libsubunit-dev)
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=(ffmpeg python3 python3-numpy python3-h5py python3-torch)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
