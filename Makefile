# The test target installs what the tests need on a fresh Debian machine
# (redis-tools for redis-cli, python3-redis for redis-py, ioredis from npm)
# and runs the whole suite with the race detector.

GO ?= go

.PHONY: test deps build run bench clean

test: deps
	$(GO) vet ./...
	$(GO) test -race -timeout 45m ./...

deps:
	@./.ci/deps

build:
	$(GO) build -o bin/legion-server ./cmd/legion-server

run:
	$(GO) run ./cmd/legion-server

clean:
	rm -rf bin legion-data
