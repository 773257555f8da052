# The README's two commands are `make serve` and `make test`; everything else is
# what they are made of.
SHELL := /bin/bash
GO ?= go
BIN := bin/face0

.PHONY: all build setup test test-go test-race serve proto bench fmt vet fuzz

all: build

setup:
	@scripts/setup.sh

build:
	$(GO) build -o $(BIN) ./cmd/face0

serve: setup build
	$(BIN) serve

run-example: setup build
	$(BIN) run examples/workflows/imagefx.json --out out

# test runs every test: set-up first (assets from package registries), then
# vet, the whole suite, and the race detector on the engine and server.
test: setup vet
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./engine/... ./plugins/... ./server/...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); echo "gofmt needed"; exit 1; }

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./engine/... ./plugins/...

# proto regenerates the plugin protocol code (needs protoc, protoc-gen-go,
# protoc-gen-go-grpc); the generated files are committed.
proto:
	protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative plugins/proto/node.proto

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./engine/workflow/
