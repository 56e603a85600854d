#!/usr/bin/env bash
# Checks (and installs, when missing) the system packages, then builds the release binary.
# Example:  launch/setup.sh            (WITH_TORCH=1 also installs python3-torch for the parity tests;
#           WITH_TENSORBOARD=1 makes .build/tensorboard-venv, TensorBoard's own event reader for its tests;
#           WITH_SLURM=1 SLURM and munge for the SLURM test cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v swift >/dev/null 2>&1; then
    echo "error: no 'swift' on PATH: a Swift 6 toolchain is needed (https://www.swift.org/install/linux/; tested with 6.3.1)" >&2
    exit 1
fi
major=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9][0-9]*\)\..*/\1/p' | head -1)
if [ -n "$major" ] && [ "$major" -lt 6 ]; then
    echo "error: $(swift --version 2>/dev/null | head -1) found; Swift 6 or newer is needed (tested with 6.3.1)" >&2
    exit 1
fi
pkgs=(libopenmpi-dev openmpi-bin libopenblas-dev zlib1g-dev dataset-fashion-mnist pkg-config iproute2)   # iproute2: ip, tc (launch/netns-cluster.sh)
[ "${WITH_TORCH:-0}" = 1 ] && pkgs+=(python3-torch)
# WITH_SLURM=1: SLURM 22.05 and munge for the SLURM test cluster (launch/slurm-cluster.sh, SlurmTests).
# Installing them starts no daemon in a container without systemd; on a host with systemd, the
# packages' own slurmctld/slurmd/munge services stay unconfigured (no /etc/slurm/slurm.conf).
[ "${WITH_SLURM:-0}" = 1 ] && pkgs+=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${WITH_TENSORBOARD:-0}" = 1 ] && ! .build/tensorboard-venv/bin/python -c "import tensorboard" 2>/dev/null; then
    echo "installing TensorBoard (PyPI) into .build/tensorboard-venv"
    python3 -m venv .build/tensorboard-venv
    .build/tensorboard-venv/bin/pip install -q --disable-pip-version-check tensorboard
fi
swift build -c release --product resnet 2>&1 | tail -1
