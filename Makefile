# keyd build and test entry points. `make test` is the README's test
# command and what CI runs.
GO ?= go

.PHONY: build test test-short bench fuzz clean

build:
	$(GO) build -o bin/keyd ./cmd/keyd

test:
	./scripts/test.sh

# Quick local loop: no setup, no fuzzing.
test-short:
	$(GO) test -count=1 ./...

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./keyring ./shamir ./hsmbridge/...
	$(GO) run ./cmd/keyd-load -duration 10s

clean:
	rm -rf bin
