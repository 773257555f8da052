// Package value converts between Go values and the protocol's Value messages:
// literals from workflow JSON, images, tensors and embeddings. Both sides of the
// plugin boundary use it, so a value means the same thing to host and plugin.
package value

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"math"
	"strconv"
	"unsafe"

	pb "github.com/face0/face0/plugins/proto"
)

// FromJSON turns a workflow literal (decoded with UseNumber) into a Value.
func FromJSON(v any) (*pb.Value, error) {
	switch x := v.(type) {
	case nil:
		return &pb.Value{Kind: &pb.Value_Null{Null: &pb.Null{}}}, nil
	case bool:
		return Bool(x), nil
	case string:
		return String(x), nil
	case json.Number:
		if i, err := strconv.ParseInt(x.String(), 10, 64); err == nil {
			return Int(i), nil
		}
		f, err := strconv.ParseFloat(x.String(), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s is out of range", x)
		}
		return Float(f), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return Int(int64(x)), nil
		}
		return Float(x), nil
	case int:
		return Int(int64(x)), nil
	case int64:
		return Int(x), nil
	case []any:
		items := make([]*pb.Value, len(x))
		for i, e := range x {
			ev, err := FromJSON(e)
			if err != nil {
				return nil, err
			}
			items[i] = ev
		}
		return &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: items}}}, nil
	case map[string]any:
		fields := make(map[string]*pb.Value, len(x))
		for k, e := range x {
			ev, err := FromJSON(e)
			if err != nil {
				return nil, err
			}
			fields[k] = ev
		}
		return &pb.Value{Kind: &pb.Value_Record{Record: &pb.Record{Fields: fields}}}, nil
	}
	return nil, fmt.Errorf("unsupported literal of Go type %T", v)
}

// ToJSON turns a scalar, list or record Value into plain Go values for JSON
// output. Tensors become a summary (dtype and shape), never their bytes.
func ToJSON(v *pb.Value) any {
	switch k := v.GetKind().(type) {
	case *pb.Value_Int:
		return k.Int
	case *pb.Value_Float:
		return k.Float
	case *pb.Value_String_:
		return k.String_
	case *pb.Value_Bool:
		return k.Bool
	case *pb.Value_Null, nil:
		return nil
	case *pb.Value_List:
		out := make([]any, len(k.List.Items))
		for i, e := range k.List.Items {
			out[i] = ToJSON(e)
		}
		return out
	case *pb.Value_Record:
		out := make(map[string]any, len(k.Record.Fields))
		for n, e := range k.Record.Fields {
			out[n] = ToJSON(e)
		}
		return out
	case *pb.Value_Tensor:
		return map[string]any{"dtype": k.Tensor.Dtype.String(), "shape": k.Tensor.Shape}
	case *pb.Value_Bytes:
		return map[string]any{"bytes": len(k.Bytes)}
	}
	return nil
}

func Int(i int64) *pb.Value     { return &pb.Value{Kind: &pb.Value_Int{Int: i}} }
func Float(f float64) *pb.Value { return &pb.Value{Kind: &pb.Value_Float{Float: f}} }
func String(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_String_{String_: s}} }
func Bool(b bool) *pb.Value     { return &pb.Value{Kind: &pb.Value_Bool{Bool: b}} }

// Null is the explicit "nothing" value.
func Null() *pb.Value { return &pb.Value{Kind: &pb.Value_Null{Null: &pb.Null{}}} }

// IsNull reports whether v is absent or the explicit null.
func IsNull(v *pb.Value) bool {
	if v == nil {
		return true
	}
	_, ok := v.Kind.(*pb.Value_Null)
	return ok || v.Kind == nil
}

// AsInt reads an INT (or a FLOAT with an integral value).
func AsInt(v *pb.Value) (int64, error) {
	switch k := v.GetKind().(type) {
	case *pb.Value_Int:
		return k.Int, nil
	case *pb.Value_Float:
		if k.Float == math.Trunc(k.Float) && math.Abs(k.Float) <= math.MaxInt64 {
			return int64(k.Float), nil
		}
		return 0, fmt.Errorf("%v is not an integer", k.Float)
	}
	return 0, fmt.Errorf("expected an integer, got %s", Kind(v))
}

// AsFloat reads a FLOAT or an INT.
func AsFloat(v *pb.Value) (float64, error) {
	switch k := v.GetKind().(type) {
	case *pb.Value_Int:
		return float64(k.Int), nil
	case *pb.Value_Float:
		return k.Float, nil
	}
	return 0, fmt.Errorf("expected a number, got %s", Kind(v))
}

// AsString reads a STRING or ENUM.
func AsString(v *pb.Value) (string, error) {
	if k, ok := v.GetKind().(*pb.Value_String_); ok {
		return k.String_, nil
	}
	return "", fmt.Errorf("expected a string, got %s", Kind(v))
}

// AsBool reads a BOOLEAN.
func AsBool(v *pb.Value) (bool, error) {
	if k, ok := v.GetKind().(*pb.Value_Bool); ok {
		return k.Bool, nil
	}
	return false, fmt.Errorf("expected true or false, got %s", Kind(v))
}

// Kind names what a value holds, for error messages.
func Kind(v *pb.Value) string {
	switch k := v.GetKind().(type) {
	case *pb.Value_Int:
		return "an integer"
	case *pb.Value_Float:
		return "a number"
	case *pb.Value_String_:
		return "a string"
	case *pb.Value_Bool:
		return "a boolean"
	case *pb.Value_Tensor:
		return fmt.Sprintf("a %s tensor %v", k.Tensor.Dtype, k.Tensor.Shape)
	case *pb.Value_Record:
		return "a record"
	case *pb.Value_List:
		return "a list"
	case *pb.Value_Bytes:
		return "bytes"
	}
	return "nothing"
}

// DTypeSize is the byte size of one element.
func DTypeSize(d pb.Tensor_DType) int {
	switch d {
	case pb.Tensor_UINT8:
		return 1
	case pb.Tensor_FLOAT16:
		return 2
	case pb.Tensor_FLOAT32, pb.Tensor_INT32:
		return 4
	case pb.Tensor_INT64:
		return 8
	}
	return 0
}

// CheckTensor verifies that a tensor's data length matches dtype and shape.
func CheckTensor(t *pb.Tensor) error {
	if t == nil {
		return errors.New("tensor is missing")
	}
	size := DTypeSize(t.Dtype)
	if size == 0 {
		return fmt.Errorf("tensor dtype %s is not supported", t.Dtype)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 || (d > 0 && n > math.MaxInt64/d) {
			return fmt.Errorf("tensor shape %v is invalid", t.Shape)
		}
		n *= d
	}
	if int64(len(t.Data)) != n*int64(size) {
		return fmt.Errorf("tensor %s %v needs %d bytes, has %d", t.Dtype, t.Shape, n*int64(size), len(t.Data))
	}
	return nil
}

// Float32Tensor builds a FLOAT32 tensor value of the given type.
func Float32Tensor(typ string, data []float32, shape ...int64) *pb.Value {
	b := make([]byte, 4*len(data))
	for i, f := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return &pb.Value{Type: typ, Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{Dtype: pb.Tensor_FLOAT32, Shape: shape, Data: b}}}
}

// AsFloat32 reads a FLOAT32 tensor's elements and shape.
func AsFloat32(v *pb.Value) ([]float32, []int64, error) {
	k, ok := v.GetKind().(*pb.Value_Tensor)
	if !ok {
		return nil, nil, fmt.Errorf("expected a tensor, got %s", Kind(v))
	}
	t := k.Tensor
	if t.Dtype != pb.Tensor_FLOAT32 {
		return nil, nil, fmt.Errorf("expected a FLOAT32 tensor, got %s", t.Dtype)
	}
	if err := CheckTensor(t); err != nil {
		return nil, nil, err
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, t.Shape, nil
}

// littleEndian is true where a []float32 and its little-endian bytes are the
// same memory, so tensors can be viewed instead of converted.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// Float32View is Float32Tensor without the copy where the machine is
// little-endian: the tensor's Data is data's own memory, so data must not
// change while the value is in use.
func Float32View(typ string, data []float32, shape ...int64) *pb.Value {
	if !littleEndian || len(data) == 0 {
		return Float32Tensor(typ, data, shape...)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), 4*len(data))
	return &pb.Value{Type: typ, Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{Dtype: pb.Tensor_FLOAT32, Shape: shape, Data: b}}}
}

// AsFloat32View is AsFloat32 without the copy where the machine is
// little-endian and the data 4-byte aligned: the elements are the tensor's
// Data, so writing them changes the tensor.
func AsFloat32View(v *pb.Value) ([]float32, []int64, error) {
	k, ok := v.GetKind().(*pb.Value_Tensor)
	if !ok || k.Tensor.Dtype != pb.Tensor_FLOAT32 || !littleEndian || len(k.Tensor.Data) == 0 ||
		uintptr(unsafe.Pointer(unsafe.SliceData(k.Tensor.Data)))%4 != 0 {
		return AsFloat32(v)
	}
	t := k.Tensor
	if err := CheckTensor(t); err != nil {
		return nil, nil, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(t.Data))), len(t.Data)/4), t.Shape, nil
}

// Images packs images of equal size into an IMAGE value: uint8 [B,H,W,C], C = 3
// when every pixel is opaque, else 4 (straight, not premultiplied, alpha).
func Images(imgs ...image.Image) (*pb.Value, error) {
	if len(imgs) == 0 {
		return nil, errors.New("an IMAGE needs at least one image")
	}
	b0 := imgs[0].Bounds()
	w, h := b0.Dx(), b0.Dy()
	nrgba := make([]*image.NRGBA, len(imgs))
	opaque := true
	for i, im := range imgs {
		b := im.Bounds()
		if b.Dx() != w || b.Dy() != h {
			return nil, fmt.Errorf("image %d is %dx%d, image 0 is %dx%d: a batch needs one size", i, b.Dx(), b.Dy(), w, h)
		}
		n, ok := im.(*image.NRGBA)
		if !ok || n.Rect.Min != (image.Point{}) {
			n = image.NewNRGBA(image.Rect(0, 0, w, h))
			draw.Draw(n, n.Rect, im, b.Min, draw.Src)
		}
		nrgba[i] = n
		if opaque && !n.Opaque() {
			opaque = false
		}
	}
	c := 4
	if opaque {
		c = 3
	}
	data := make([]byte, 0, len(imgs)*w*h*c)
	for _, n := range nrgba {
		for y := 0; y < h; y++ {
			row := n.Pix[y*n.Stride : y*n.Stride+4*w]
			if c == 4 {
				data = append(data, row...)
				continue
			}
			for x := 0; x < w; x++ {
				data = append(data, row[4*x], row[4*x+1], row[4*x+2])
			}
		}
	}
	return &pb.Value{Type: "IMAGE", Kind: &pb.Value_Tensor{Tensor: &pb.Tensor{
		Dtype: pb.Tensor_UINT8, Shape: []int64{int64(len(imgs)), int64(h), int64(w), int64(c)}, Data: data,
	}}}, nil
}

// AsImages unpacks an IMAGE value.
func AsImages(v *pb.Value) ([]*image.NRGBA, error) {
	k, ok := v.GetKind().(*pb.Value_Tensor)
	if !ok {
		return nil, fmt.Errorf("expected an IMAGE tensor, got %s", Kind(v))
	}
	t := k.Tensor
	if t.Dtype != pb.Tensor_UINT8 || len(t.Shape) != 4 {
		return nil, fmt.Errorf("an IMAGE is uint8 [B,H,W,C], got %s %v", t.Dtype, t.Shape)
	}
	if err := CheckTensor(t); err != nil {
		return nil, err
	}
	b, h, w, c := int(t.Shape[0]), int(t.Shape[1]), int(t.Shape[2]), int(t.Shape[3])
	if c != 1 && c != 3 && c != 4 {
		return nil, fmt.Errorf("an IMAGE has 1, 3 or 4 channels, got %d", c)
	}
	out := make([]*image.NRGBA, b)
	for i := range out {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		src := t.Data[i*h*w*c:]
		for p := 0; p < w*h; p++ {
			s := src[p*c:]
			d := img.Pix[4*p : 4*p+4]
			switch c {
			case 1:
				d[0], d[1], d[2], d[3] = s[0], s[0], s[0], 255
			case 3:
				d[0], d[1], d[2], d[3] = s[0], s[1], s[2], 255
			case 4:
				copy(d, s[:4])
			}
		}
		out[i] = img
	}
	return out, nil
}
