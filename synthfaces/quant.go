package synthfaces

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
)

// The shipped networks (probe.bin, embedder.bin, and evalnet's evalnet.bin)
// store weight matrices as int8 rows, each with one float32 scale (max |w| / 127): 4× smaller than
// float32, and accurate enough for these small classifiers.

// WriteInt8Rows appends the rows of length n of w, each as its float32 scale
// and n int8 values.
func WriteInt8Rows(b *bytes.Buffer, w []float32, n int) {
	for r := 0; r+n <= len(w); r += n {
		row := w[r : r+n]
		var mx float32
		for _, v := range row {
			mx = max(mx, float32(math.Abs(float64(v))))
		}
		scale := mx / 127
		if scale == 0 {
			scale = 1
		}
		binary.Write(b, binary.LittleEndian, scale)
		for _, v := range row {
			b.WriteByte(byte(int8(math.Round(float64(v / scale)))))
		}
	}
}

// ReadInt8Rows fills w with rows of length n written by WriteInt8Rows.
func ReadInt8Rows(r *bytes.Reader, w []float32, n int) error {
	q := make([]byte, n)
	for off := 0; off+n <= len(w); off += n {
		var scale float32
		if err := binary.Read(r, binary.LittleEndian, &scale); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, q); err != nil {
			return err
		}
		for i, v := range q {
			w[off+i] = float32(int8(v)) * scale
		}
	}
	return nil
}
