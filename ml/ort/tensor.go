package ort

import (
	"fmt"

	"github.com/face0/face0/ml/onnx"
)

// Tensor is a dense, row-major tensor in Go memory: Data is a []float32,
// []int32 or []int64 holding exactly the product of Shape elements.
// A nil or empty Shape is a scalar holding one element.
type Tensor struct {
	Shape []int64
	Data  any
}

// F32 makes a float32 tensor.
func F32(data []float32, shape ...int64) Tensor { return Tensor{Shape: shape, Data: data} }

// I32 makes an int32 tensor (SD text encoders take input_ids as int32).
func I32(data []int32, shape ...int64) Tensor { return Tensor{Shape: shape, Data: data} }

// I64 makes an int64 tensor.
func I64(data []int64, shape ...int64) Tensor { return Tensor{Shape: shape, Data: data} }

// Ints makes an integer tensor of the type a model's input takes: int64
// when dtype is onnx.Int64 (token ids of some text encoder exports), else
// int32.
func Ints(data []int32, dtype onnx.DType, shape ...int64) Tensor {
	if dtype != onnx.Int64 {
		return I32(data, shape...)
	}
	d := make([]int64, len(data))
	for i, v := range data {
		d[i] = int64(v)
	}
	return I64(d, shape...)
}

// DType is the element type, or 0 for unsupported data.
func (t Tensor) DType() onnx.DType {
	switch t.Data.(type) {
	case []float32:
		return onnx.Float
	case []int32:
		return onnx.Int32
	case []int64:
		return onnx.Int64
	}
	return 0
}

// Float32 is the data as []float32 (nil if it is another type).
func (t Tensor) Float32() []float32 { d, _ := t.Data.([]float32); return d }

// Int32 is the data as []int32 (nil if it is another type).
func (t Tensor) Int32() []int32 { d, _ := t.Data.([]int32); return d }

// Int64 is the data as []int64 (nil if it is another type).
func (t Tensor) Int64() []int64 { d, _ := t.Data.([]int64); return d }

// Len is the element count the shape implies.
func (t Tensor) Len() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

func (t Tensor) dataLen() int {
	switch d := t.Data.(type) {
	case []float32:
		return len(d)
	case []int32:
		return len(d)
	case []int64:
		return len(d)
	}
	return -1
}

// check reports a tensor whose data does not match its shape.
func (t Tensor) check() error {
	if t.DType() == 0 {
		return fmt.Errorf("data is %T; want []float32, []int32 or []int64", t.Data)
	}
	for i, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("shape %v has negative dim %d", t.Shape, i)
		}
	}
	if int64(t.dataLen()) != t.Len() {
		return fmt.Errorf("shape %v needs %d values, data has %d", t.Shape, t.Len(), t.dataLen())
	}
	return nil
}
