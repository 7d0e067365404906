# One entry point for users and CI: `make demo` and `make test` work on a fresh Debian machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: Prometheus + promtool and Alertmanager (+ amtool) for the integration and end-to-end
# tests, systemd for `systemd-analyze verify` of the unit file; GMP and a C compiler for fastecdsa,
# which py-libp2p builds from source. kustomize (the Kubernetes checks) is a Go tool: go-deps.
BUILD_PACKAGES := libgmp-dev gcc
APT_PACKAGES := prometheus prometheus-alertmanager systemd $(BUILD_PACKAGES)

.PHONY: demo demo-go check test system-deps build-deps node-deps go-deps go-test venv lint typecheck proto dashboards fuzz

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

system-deps: PACKAGES = $(APT_PACKAGES)
build-deps: PACKAGES = $(BUILD_PACKAGES)
system-deps build-deps:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

# Node and npm run the observer-toolkit's own code (vendored in tests/observer/vendor) in
# tests/integration/test_observer_reads_*.py. The tests install the npm packages
# tests/observer/package-lock.json pins (`npm ci`).
node-deps:
	@if ! { command -v node && command -v npm; } >/dev/null 2>&1; then \
	  echo "installing Debian packages: nodejs npm"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; fi

demo: build-deps venv
	$(BIN)/libp2p-exporter demo

# The Go demo: N go-libp2p hosts on loopback (kad-dht, gossipsub, churn), each serving introspection
# (producers/go/cmd/introspect-swarm), watched by `libp2p-exporter live` over the wire. Ctrl-C stops both.
# DEMO_GO_FLAGS go to the swarm (-n, -churn, -listen, ...); EXPORTER_FLAGS to the exporter.
DEMO_GO_FLAGS ?= -n 5 -churn 5s
EXPORTER_FLAGS ?=
demo-go: build-deps venv
	cd $(GODIR) && $(GO) build -o $(abspath build)/introspect-swarm ./cmd/introspect-swarm
	@dir=$$(mktemp -d); \
	build/introspect-swarm $(DEMO_GO_FLAGS) -config-out $$dir/targets.yml & swarm=$$!; \
	trap 'kill -TERM $$swarm 2>/dev/null; wait $$swarm; rm -rf $$dir' EXIT; trap 'exit 130' INT TERM; \
	while [ ! -s $$dir/targets.yml ]; do kill -0 $$swarm 2>/dev/null || exit 1; sleep 0.2; done; \
	$(BIN)/libp2p-exporter live --config $$dir/targets.yml $(EXPORTER_FLAGS)

# The fast tier (tests/unit: in-process, no servers) while working; `make test` (CI) runs every tier.
check: venv
	$(BIN)/python -m pytest -q tests/unit

# CI: the habits first (lint, format, types), then every tier.
test: venv lint typecheck system-deps node-deps go-deps go-test
	$(BIN)/python -m pytest -q

# The go-libp2p producer (producers/go, its own go.mod): Go from the machine, modules from the proxy.
# protoc-gen-go (pinned) generates its protobuf code from proto/, as grpc_tools does for Python.
GO ?= go
GODIR := producers/go
GOBIN_DIR := $(abspath .gobin)
PROTOC_GEN_GO := $(GOBIN_DIR)/protoc-gen-go
PROTOC_GEN_GO_VERSION := v1.36.12

# kustomize renders deploy/kubernetes in the tests (the version kubectl 1.32 embeds); Debian has no
# kubectl package, and this needs nothing beyond Go and the module proxy.
KUSTOMIZE := $(GOBIN_DIR)/kustomize
KUSTOMIZE_VERSION := v5.5.0

$(PROTOC_GEN_GO):
	GOBIN=$(GOBIN_DIR) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(KUSTOMIZE):
	GOBIN=$(GOBIN_DIR) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

go-deps: $(PROTOC_GEN_GO) $(KUSTOMIZE)
	cd $(GODIR) && $(GO) mod download

# gofmt, go vet and go test of the Go module (producers/go), run by make test.
go-test: go-deps
	@unformatted=$$(cd $(GODIR) && gofmt -l $$(find . -name '*.go' ! -name '*.pb.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	cd $(GODIR) && $(GO) vet ./... && $(GO) test -count=1 ./...

# ruff check and ruff format over everything Python (the generated *_pb2 modules are excluded in pyproject.toml).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy --strict on exporter/ ([tool.mypy] in pyproject.toml).
typecheck: venv
	$(BIN)/mypy

# Regenerate the committed protobuf modules (tests fail when they are stale): the introspection
# protocol and go-libp2p-pubsub's event-tracer schema.
GO_PB_MODULE := github.com/libp2p-exporter/libp2p-exporter/producers/go/pb
proto: venv $(PROTOC_GEN_GO)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=exporter/protocol --pyi_out=exporter/protocol proto/introspection.proto proto/pubsub_trace.proto proto/prometheus_metrics.proto
	$(BIN)/python -m grpc_tools.protoc -Iproto --plugin=protoc-gen-go=$(PROTOC_GEN_GO) --go_out=$(GODIR)/pb \
	  --go_opt=paths=source_relative --go_opt=Mintrospection.proto=$(GO_PB_MODULE) introspection.proto

# Regenerate the dashboards' JSON, the alert rules and the Kubernetes objects built from them (tests fail when stale).
dashboards: venv
	$(BIN)/python -m dashboards

# Fuzz the consumer (decode, hub, exposition) for FUZZ_SECONDS (default an hour); inputs that break an
# invariant are saved under fuzz-crashes/, and an input costing over 2 s of CPU per MiB fails the run (the
# measured worst is 0.42, docs/fuzzing.md). CI runs a short, fixed-seed budget (tests/integration/test_fuzz.py).
FUZZ_SECONDS ?= 3600
fuzz: venv
	$(BIN)/python -m bench.fuzz --seconds $(FUZZ_SECONDS) --seed $$(date +%s) --max-cpu-per-mib 2
