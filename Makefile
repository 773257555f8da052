# The README's two commands are `make serve` and `make test`; everything else is
# what they are made of.
SHELL := /bin/bash
GO ?= go
BIN := bin/face0
FACE0_HOME ?= $(HOME)/.local/share/face0
# make serve PORT=9000 (or LISTEN=0.0.0.0:9000 with FACE0_TOKEN set) picks the address.
PORT ?= 8188
LISTEN ?= 127.0.0.1:$(PORT)
# make evaluate-tiny writes here; REPORT=docs/tiny-model refreshes the committed report.
REPORT ?= evaluation

.PHONY: all build setup setup-test setup-gpu fullsize device-check test soak vet serve run-example example-plugin proto bench bench-go fuzz editor reproduce-tiny evaluate-tiny

all: build

setup:
	@scripts/setup.sh

# setup-gpu (opt-in) installs onnxruntime 1.29.0 with its CUDA provider
# (checksum-verified, from npm) and lists the CUDA 13 / cuDNN 9 libraries
# this machine lacks; runs then choose the device (--device cuda).
setup-gpu: setup
	@scripts/setup-gpu.sh

# setup-test adds what only the tests need: Chromium for the editor's browser test.
setup-test: setup
	@scripts/setup-browser.sh

# editor rebuilds the browser editor into editor/dist (committed, so that a Go
# build needs no npm); editor/embed_test.go fails when dist is stale.
editor:
	editor/build.sh

build:
	$(GO) build -o $(BIN) ./cmd/face0

# example-plugin installs what the example workflows use: the example
# third-party plugin into face0's plugins folder, the example inputs and a demo
# photo into its input folder (never replacing a user's file), the shipped
# tiny Face0 model (models/face0-synthfaces, linked so that it stays the
# repository's) and the random-weight test model "tiny". make serve does it too.
FACE0_CACHE ?= $(HOME)/.cache/face0
example-plugin: setup build
	$(GO) build -o $(FACE0_HOME)/plugins/imagefx ./examples/plugins/imagefx
	@mkdir -p $(FACE0_HOME)/input && cp -n examples/inputs/* $(FACE0_CACHE)/face-api/demo/sample1.jpg $(FACE0_HOME)/input/
	@test -f $(FACE0_HOME)/models/tiny/face0.json || $(BIN) models make-tiny $(FACE0_HOME)/models/tiny
	@mkdir -p $(FACE0_HOME)/models && ln -sfn $(CURDIR)/models/face0-synthfaces $(FACE0_HOME)/models/face0-synthfaces

serve: setup build example-plugin
	$(BIN) serve --home $(FACE0_HOME) --listen $(LISTEN) --default-workflow examples/workflows/face0-default.json

run-example: setup build example-plugin
	$(BIN) run examples/workflows/imagefx.json --home $(FACE0_HOME) --input examples/inputs --out out

# test runs every test: set-up first (assets from package registries), then
# vet, the whole suite, and the race detector on the engine, plugins, server
# and cluster (the concurrent parts).
test: setup-test vet
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./engine/... ./plugins/... ./server/... ./cluster/...

vet:
	$(GO) vet ./...
	$(GO) vet -tags soak,face0memtest ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); echo "gofmt needed"; exit 1; }

# soak runs the long reliability scenarios (kill -9 rounds, interrupts,
# corruption sweeps, the training defaults: about half an hour; see docs/reliability.md). Their fast part
# runs in `make test`. FACE0_SOAK_TIME (a Go duration) sets how long each
# scenario runs.
soak:
	$(GO) test -tags soak -run Soak -count=1 -timeout 60m ./...

# reproduce-tiny rebuilds the synthfaces dataset, retrains the shipped tiny
# model from scratch and regenerates its evaluation (about 2 hours here).
reproduce-tiny:
	scripts/reproduce-tiny.sh

# evaluate-tiny regenerates Tables 1 and 2, the grid and the strips of the
# shipped model into $(REPORT) (37 minutes on two shared cores, 16 of them
# the per-identity fine-tuning baseline, reused by later runs); make evaluate-tiny
# REPORT=docs/tiny-model replaces the committed report.
evaluate-tiny: build
	$(BIN) evaluate --home $(FACE0_HOME) --models models --model face0-synthfaces --report $(REPORT)

# fullsize proves Stable Diffusion 1.5's full-size path on this machine with
# random weights: write a single-file checkpoint, import it, sample, fine-tune
# 2 steps with --base, sample the export, check onnxruntime against GoMLX
# (cmd/face0/fullsize_test.go; about 20 GB of disk and 16 GB of memory; the
# table of peak RSS, disk and time per stage goes to FULLSIZE_REPORT).
FULLSIZE_REPORT ?= fullsize-report.md
fullsize: setup
	FACE0_FULLSIZE_REPORT=$(abspath $(FULLSIZE_REPORT)) $(GO) test -tags fullsize -run 'TestFullSize$$' -count=1 -v -timeout 3h ./cmd/face0

# device-check runs the GPU checks on a machine with an NVIDIA GPU (and says
# what it would do, exiting 0, on one without).
device-check: build
	scripts/device-check.sh

# bench measures the engine end to end (face0 bench --help); bench-go runs the
# Go benchmarks of the engine and plugin packages.
bench: build
	$(BIN) bench $(BENCH_FLAGS)

bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./engine/... ./plugins/...

# proto regenerates the plugin protocol code (needs protoc, protoc-gen-go,
# protoc-gen-go-grpc); the generated files are committed.
proto:
	protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative plugins/proto/node.proto

# fuzz runs each fuzz target for FUZZTIME (make fuzz FUZZTIME=5m for longer):
# the workflow parser, and the server's handlers of what clients send.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./engine/workflow/
	$(GO) test -run '^$$' -fuzz '^FuzzPrompt$$' -fuzztime $(FUZZTIME) ./server/
	$(GO) test -run '^$$' -fuzz '^FuzzUploadName$$' -fuzztime $(FUZZTIME) ./server/
	$(GO) test -run '^$$' -fuzz '^FuzzView$$' -fuzztime $(FUZZTIME) ./server/
