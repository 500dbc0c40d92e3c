#!/usr/bin/env bash
# Installs SoftHSM2 (the PKCS#11 module and softhsm2-util) for keyd's
# PKCS#11 tests and `keyd dev -hsm softhsm2`. Idempotent: exits at once when
# both are present. Waits for another apt/dpkg run to release its lock.
#
# keyd never uses the system token directory (/var/lib/softhsm, group
# softhsm): tests and dev mode write their own softhsm2.conf and point
# SOFTHSM2_CONF at it (see hsmbridge/softhsm).
set -euo pipefail

modules=(/usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so)

installed() {
	command -v softhsm2-util >/dev/null 2>&1 || return 1
	local m
	for m in "${modules[@]}"; do
		if [[ -f $m ]]; then
			echo "softhsm2: module $m, $(command -v softhsm2-util)"
			return 0
		fi
	done
	return 1
}

if installed; then
	exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "setup-softhsm: SoftHSM2 is missing and installing it needs root (no sudo found)" >&2
		exit 1
	fi
	sudo=(sudo)
fi

# DPkg::Lock::Timeout makes apt wait (up to 10 minutes) for a concurrent
# apt or dpkg run instead of failing on its lock.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)

if ! "${apt[@]}" install -y --no-install-recommends softhsm2; then
	# Most often a stale package list: refresh it once and retry.
	"${apt[@]}" update
	"${apt[@]}" install -y --no-install-recommends softhsm2
fi

if ! installed; then
	echo "setup-softhsm: softhsm2 installed but no module at ${modules[*]} or no softhsm2-util" >&2
	exit 1
fi
