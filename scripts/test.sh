#!/usr/bin/env bash
# keyd's test command (the one README.md names and .ci/run runs):
# set-up, formatting, vet, staticcheck, every test under -race with the
# real SoftHSM2, and a short run of every fuzz target.
#
# FUZZTIME (default 3s) sets how long each fuzz target runs.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
export PATH="$PATH:$(go env GOPATH)/bin"
# SoftHSM2 is installed above, so the PKCS#11 tests must run, not skip.
export KEYD_SOFTHSM=1
# age and gpg are installed above too: their interop tests must run.
export KEYD_INTEROP_TOOLS=1

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n $unformatted ]]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
staticcheck ./...
echo "== go test -race"
go test -race -count=1 -timeout 15m ./...
echo "== fuzz (${FUZZTIME:-3s} each)"
for file in $(grep -rl --include='*_test.go' '^func Fuzz' .); do
	pkg=$(dirname "$file")
	for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
		echo "-- $pkg $target"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="${FUZZTIME:-3s}" "$pkg"
	done
done
echo "== all tests passed"
