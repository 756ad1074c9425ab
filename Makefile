# pyro's build. Go comes from /usr/local/go when it is not in PATH.
export PATH := $(PATH):/usr/local/go/bin
export CGO_ENABLED := 0

GO      ?= go
BIN     := bin/pyro
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/pyro-sandbox/pyro/internal/buildinfo.version=$(VERSION)
GOFLAGS_BUILD := -trimpath -tags netgo,osusergo -ldflags '$(LDFLAGS)'
GOFLAGS_BUILD_EMBED := -trimpath -tags netgo,osusergo,guestbin -ldflags '$(LDFLAGS)'
GUEST_BIN := internal/guestbin/pyro-guest

.PHONY: all build deps deps-test quickstart test unit e2e bench fuzz vet fmt clean

all: build

# The static pyro binary: the host CLI, with the guest's init and agent
# (cmd/pyro-guest, the same source without the host's packages) embedded.
build:
	$(GO) build $(GOFLAGS_BUILD) -o $(GUEST_BIN) ./cmd/pyro-guest
	$(GO) build $(GOFLAGS_BUILD_EMBED) -o $(BIN) ./cmd/pyro

deps:
	./scripts/install-host-deps.sh

# Set up this host, build pyro, make debian:12 ready and run one command in a VM.
quickstart: deps build
	./$(BIN) doctor
	./$(BIN) env pull debian:12
	./$(BIN) run debian:12 -- git --version

# Everything CI runs: unit tests, then end-to-end tests that boot real VMs.
test: deps-test build vet unit e2e

# The tests also need Node.js and npm, for the MCP Inspector CLI.
deps-test:
	PYRO_WITH_NODE=1 ./scripts/install-host-deps.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 ./...

e2e: build
	./$(BIN) env pull debian:12
	PYRO_E2E_BINARY=$(CURDIR)/$(BIN) $(GO) test -count=1 -tags e2e -timeout 45m -v ./e2e/...

# Benchmarks that boot VMs; results go to docs/benchmarks.md.
bench: build
	./$(BIN) env pull debian:12
	$(GO) run ./bench -binary $(CURDIR)/$(BIN) -out docs/benchmarks.md

fuzz:
	$(GO) test -run XXX -fuzz FuzzHostSession -fuzztime 60s ./internal/agentproto
	$(GO) test -run XXX -fuzz FuzzReadFrame -fuzztime 30s ./internal/agentproto
	$(GO) test -run XXX -fuzz FuzzExtractVmlinux -fuzztime 30s ./internal/kernel
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime 30s ./internal/patch
	$(GO) test -run XXX -fuzz FuzzRoundTrip -fuzztime 30s ./internal/patch

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin $(GUEST_BIN)
