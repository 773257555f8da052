package workflow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// PNG text keys, the same ComfyUI uses, so that either tool can read the other's
// images: "workflow" holds the native graph, "prompt" the API form.
const (
	PNGKeyWorkflow = "workflow"
	PNGKeyPrompt   = "prompt"
)

// IsPNG reports whether data starts with the PNG signature.
func IsPNG(data []byte) bool { return bytes.HasPrefix(data, pngSignature) }

// EmbedPNG returns png with text chunks added right after the header: an image
// then carries its own recipe. Values that are not plain ASCII go in iTXt
// (UTF-8) chunks, the rest in tEXt.
func EmbedPNG(png []byte, text map[string]string) ([]byte, error) {
	if !IsPNG(png) || len(png) < 8+25 {
		return nil, errors.New("not a PNG image")
	}
	ihdrLen := int(binary.BigEndian.Uint32(png[8:12]))
	end := 8 + 12 + ihdrLen // signature + IHDR chunk
	if string(png[12:16]) != "IHDR" || end > len(png) {
		return nil, errors.New("PNG does not start with an IHDR chunk")
	}
	var buf bytes.Buffer
	buf.Write(png[:end])
	for _, k := range sortedKeys(text) {
		v := text[k]
		if isASCII(v) {
			writeChunk(&buf, "tEXt", append(append([]byte(k), 0), v...))
		} else {
			// keyword, 0, compression flag 0, method 0, empty language, 0, empty translated keyword, 0, text
			data := append([]byte(k), 0, 0, 0, 0, 0)
			writeChunk(&buf, "iTXt", append(data, v...))
		}
	}
	buf.Write(png[end:])
	return buf.Bytes(), nil
}

func writeChunk(w *bytes.Buffer, typ string, data []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	w.Write(n[:])
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	w.WriteString(typ)
	w.Write(data)
	binary.BigEndian.PutUint32(n[:], crc.Sum32())
	w.Write(n[:])
}

// PNGText reads the tEXt and uncompressed iTXt chunks of a PNG.
func PNGText(png []byte) (map[string]string, error) {
	if !IsPNG(png) {
		return nil, errors.New("not a PNG image")
	}
	out := map[string]string{}
	r := bytes.NewReader(png[8:])
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return out, nil // truncated after the chunks we could read
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		typ := string(hdr[4:8])
		if int64(n) > int64(r.Len()) {
			return out, fmt.Errorf("PNG chunk %q claims %d bytes, only %d left", typ, n, r.Len())
		}
		data := make([]byte, n)
		io.ReadFull(r, data)
		r.Seek(4, io.SeekCurrent) // CRC
		switch typ {
		case "tEXt":
			if k, v, ok := bytes.Cut(data, []byte{0}); ok {
				out[string(k)] = string(v)
			}
		case "iTXt":
			k, rest, ok := bytes.Cut(data, []byte{0})
			if !ok || len(rest) < 2 || rest[0] != 0 {
				continue // compressed iTXt: not written by face0 or ComfyUI
			}
			rest = rest[2:]
			_, rest, _ = bytes.Cut(rest, []byte{0}) // language
			_, rest, _ = bytes.Cut(rest, []byte{0}) // translated keyword
			out[string(k)] = string(rest)
		case "IDAT", "IEND":
			return out, nil // text after the image data is rare; stop early
		}
	}
}

// FromPNG reads the workflow an image carries: the native "workflow" text, or
// else the ComfyUI "prompt".
func FromPNG(png []byte) (*Workflow, Format, error) {
	text, err := PNGText(png)
	if err != nil {
		return nil, "", err
	}
	for _, key := range []string{PNGKeyWorkflow, PNGKeyPrompt} {
		if s, ok := text[key]; ok {
			w, f, err := Parse([]byte(s))
			if err == nil || key == PNGKeyPrompt {
				return w, f, err
			}
		}
	}
	return nil, "", errors.New("the PNG carries no workflow (no \"workflow\" or \"prompt\" text chunk)")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
