// Package onnxpb holds the ONNX protobuf messages (ModelProto, GraphProto,
// TensorProto, ...) generated from onnx.proto beside this file.
//
// The proto is the ONNX project's own (Apache-2.0) with its package renamed;
// see the note at its top. Regenerate with `go generate` (needs protoc and
// protoc-gen-go); the generated file is committed so builds need neither.
package onnxpb

//go:generate protoc -I ../../.. --go_out=../../.. --go_opt=paths=source_relative ml/onnx/onnxpb/onnx.proto
