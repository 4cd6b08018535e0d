#!/usr/bin/env bash
# Installs the system libraries Serval builds against (Debian): OpenBLAS, SQLite (the embedded state store),
# pkg-config and curl. Safe to run repeatedly.
set -euo pipefail
packages=(libopenblas-dev libsqlite3-dev pkg-config curl)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
