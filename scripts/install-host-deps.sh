#!/bin/sh
# Installs what a Debian 12 host needs to build and run pyro's VMs. Safe to
# run again: packages already present are not touched.
#   qemu-system-x86  the VMM (microvm machine type)
#   debootstrap, dpkg, e2fsprogs, coreutils  local environment builds
# The guest kernel is not installed on the host: environment builds take
# Debian's cloud kernel package from the mirror into the environment.
set -eu
packages="qemu-system-x86 debootstrap dpkg e2fsprogs coreutils util-linux ca-certificates"
# The tests also run the MCP Inspector CLI (npm): Node.js and npm from
# wherever they came, else Debian's.
if [ "${PYRO_WITH_NODE:-0}" = 1 ] && ! { command -v node >/dev/null && command -v npm >/dev/null; }; then
	packages="$packages nodejs npm"
fi
missing=""
for p in $packages; do
	dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "host dependencies: all present"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "host dependencies missing:$missing; run this script as root" >&2
	exit 1
fi
echo "host dependencies: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends $missing
