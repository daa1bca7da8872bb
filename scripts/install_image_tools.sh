#!/usr/bin/env bash
# Installs what scripts/image_test.sh needs to build and run the connector image without a
# Docker engine: buildah (build), podman (import the stand-in base image), debootstrap (make it).
# Idempotent: returns at once when all three are already there. Needs root and apt-get.
set -euo pipefail

TOOLS=(buildah podman debootstrap)

missing=()
for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "image tools present: ${TOOLS[*]}"
    exit 0
fi

echo "image tools missing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "install_image_tools: must run as root to install ${missing[*]} with apt-get" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_image_tools: apt-get not found; install ${missing[*]} with this system's package manager" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${TOOLS[@]}" >/dev/null

for tool in "${TOOLS[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install_image_tools: $tool still missing after apt-get install" >&2
        exit 1
    fi
done
echo "image tools installed: ${TOOLS[*]}"
