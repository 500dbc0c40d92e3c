#!/usr/bin/env bash
# Installs everything keyd's tests need on a fresh Debian machine:
# SoftHSM2 (apt), Go modules (module proxy) and staticcheck. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-softhsm.sh
# age and gpg: the custodian interop tests open encrypted shares with the
# tools custodians use (age -d, gpg -d).
missing=()
command -v age >/dev/null 2>&1 || missing+=(age)
command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
if ((${#missing[@]})); then
	sudo=()
	[[ $(id -u) -ne 0 ]] && sudo=(sudo)
	apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
	"${apt[@]}" install -y --no-install-recommends "${missing[@]}" || { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; }
fi
go mod download
if ! command -v staticcheck >/dev/null 2>&1 && [[ ! -x "$(go env GOPATH)/bin/staticcheck" ]]; then
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
