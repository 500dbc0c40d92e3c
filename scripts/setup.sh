#!/usr/bin/env bash
# Installs everything keyd's tests need on a fresh Debian machine:
# SoftHSM2 (apt), Go modules (module proxy) and staticcheck. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-softhsm.sh
go mod download
if ! command -v staticcheck >/dev/null 2>&1 && [[ ! -x "$(go env GOPATH)/bin/staticcheck" ]]; then
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
