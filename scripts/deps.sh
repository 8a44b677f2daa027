#!/usr/bin/env bash
# Installs the Debian packages Hopwire needs to build, test and run its demo.
# Quiet when everything is already present; uses apt-get only.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libuv1-dev libsodium-dev libssl-dev libjansson-dev
  libmicrohttpd-dev libcurl4-openssl-dev libsqlite3-dev libhiredis-dev
  libcmocka-dev python3 python3-pytest curl
  python3-cryptography redis-server nftables iproute2
  chromium chromium-driver openssh-server openssh-client
  libmnl-dev libnftables-dev libcap-dev iperf3 tcpdump iputils-ping
  yggdrasil nebula wireguard-go wireguard-tools socat
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: run 'sudo scripts/deps.sh' (or as root: apt-get install ${missing[*]}), then try again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done" >&2
