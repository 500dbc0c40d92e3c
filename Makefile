# keyd build and test entry points. `make test` is the README's test
# command and what CI runs.
GO ?= go

.PHONY: build test test-short bench fuzz clean

# The commit is stamped into `keyd version` (GOFLAGS=-buildvcs=false on CI
# machines leaves the Go build info without it).
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)

build:
	$(GO) build -ldflags "-X main.commit=$(COMMIT)" -o bin/keyd ./cmd/keyd

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

# Local 5-node, 3-region cluster in docker containers, a SoftHSM2 token per
# node (see docker-compose.cluster.yml), its bounded region-failover drill,
# and `make chaos`: every drill against a separate compose cluster
# (project keydchaos), cleaned up at the end. Not part of `make test`.
.PHONY: cluster-image cluster-up cluster-down chaos-compose chaos

cluster-image:
	./scripts/cluster-image.sh

cluster-up:
	./scripts/cluster-up.sh

cluster-down:
	./scripts/cluster-down.sh

chaos-compose:
	./chaos/compose/region-failover.sh

chaos:
	./scripts/chaos.sh

# Fault drills in process (docs/DRILLS.md): `make drill DRILL=leader-stop`
# runs one and writes its JSON report to drill-reports/<drill>.json;
# `make drill` runs them all. KEYD_CHAOS_LONG=1 for the long variants.
.PHONY: drill
DRILL ?= .*
drill:
	KEYD_DRILL="$(DRILL)" KEYD_DRILL_REPORT_DIR=$(CURDIR)/drill-reports $(GO) test -race -count=1 -timeout 60m -run '^TestDrill$$/^($(DRILL))$$' -v ./chaos
