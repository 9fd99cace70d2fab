# The test target installs what the tests need on a fresh Debian machine
# (redis-tools for redis-cli, python3-redis for redis-py, ioredis from npm)
# and runs the whole suite with the race detector, then the end-to-end
# tests again against servers that serve each connection from a goroutine
# of its own (--event-loops -1) rather than from event loops.

GO ?= go

.PHONY: test deps build run bench clean

test: deps
	$(GO) vet ./...
	$(GO) test -race -timeout 45m ./...
	LEGION_EVENT_LOOPS=-1 $(GO) test -race -count=1 -timeout 30m ./e2e/

deps:
	@./.ci/deps

# The benchmark against redis-server (10–15 minutes; not part of test).
# It needs Debian's redis-server and redis-tools, installed here if missing,
# and rewrites BENCHMARKS.md.
bench:
	@command -v redis-server >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1 || \
		{ SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null; }
	$(GO) run ./bench -out BENCHMARKS.md -profile bench-cpu.prof

build:
	$(GO) build -o bin/legion-server ./cmd/legion-server

run:
	$(GO) run ./cmd/legion-server

clean:
	rm -rf bin legion-data
