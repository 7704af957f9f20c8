# agentrail — the two front-door commands are `make demo` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/agentrail
PKGS  := ./...
export CGO_ENABLED := 0

.PHONY: all build chdb demo test unit vet fuzz bench faults race lint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/agentrail

# The embedded ClickHouse engine library (ClickHouse 26.7 from npm), cached
# outside the repository; a no-op once present.
chdb:
	@scripts/fetch-chdb.sh

# The whole pipeline on the embedded default: broker, real ClickHouse,
# simulated agents. DEMO_FLAGS="--duration 20s" shortens it.
demo: chdb build
	$(BIN) demo $(DEMO_FLAGS)

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Unit and integration tests against the embedded broker and a real
# ClickHouse server, then a short run of every fuzz target.
test: chdb build vet
	AGENTRAIL_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 14m $(PKGS)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=300x

FUZZTIME ?= 60s
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg > /tmp/agentrail-fuzz.log 2>&1 || { cat /tmp/agentrail-fuzz.log; exit 1; }; \
	    tail -n 1 /tmp/agentrail-fuzz.log; \
	  done; \
	done

# Micro-benchmarks (Go's testing.B), then the end-to-end benchmark: ours vs
# ClickHouse's Kafka engine on the same events, freshness, producer blocking,
# analyst queries on 10M events, storage. BENCH_FLAGS="--events 500000" shrinks it.
# Half a second per micro-benchmark (100,000s of calls each) keeps the whole
# run under 15 minutes now that each throughput run also waits for its merges.
bench: chdb build
	$(GO) test -run '^$$' -bench . -benchmem -count 3 -benchtime 0.5s ./schemas ./producers ./policy
	$(BIN) bench $(BENCH_FLAGS)

# The fault tests at full size (make test runs them shortened): ingest killed
# repeatedly during 1M events, ClickHouse down 30 s, broker restart,
# rebalances, 1% poison. Each ends with exact accounting.
faults: chdb build
	AGENTRAIL_BIN=$(CURDIR)/$(BIN) AGENTRAIL_FAULTS_FULL=1 $(GO) test -count=1 -v -timeout 60m -run . ./pipeline/faulttest

# The tests under the race detector (needs cgo and a C compiler; slower,
# so not part of make test). Allocation tests skip themselves there.
race: chdb build
	AGENTRAIL_BIN=$(CURDIR)/$(BIN) CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m $(PKGS)

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 $(PKGS)

clean:
	rm -rf bin out data
