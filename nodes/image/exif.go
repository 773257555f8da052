package image

import (
	"bytes"
	"encoding/binary"
	"image"
)

// EXIF orientation (tag 0x0112) is read straight from the file's bytes: the
// only EXIF field LoadImage needs, so a small bounded parser beats a
// dependency. Phones store photos as the sensor saw them and record the
// rotation here; a face detector given the sideways pixels finds nothing.

const exifOrientationTag = 0x0112

// exifOrientation returns the EXIF orientation (1..8) recorded in a JPEG,
// PNG or WebP file, or 1 when there is none or it cannot be read: a damaged
// EXIF block must not make a decodable image fail.
func exifOrientation(data []byte) int {
	var tiff []byte
	switch {
	case len(data) > 2 && data[0] == 0xFF && data[1] == 0xD8:
		tiff = jpegEXIF(data)
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		tiff = pngEXIF(data)
	case len(data) > 12 && string(data[0:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		tiff = webpEXIF(data)
	}
	if o := tiffOrientation(tiff); o >= 1 && o <= 8 {
		return o
	}
	return 1
}

// jpegEXIF finds the APP1 "Exif\0\0" segment among the markers before the
// image data and returns the TIFF block inside it.
func jpegEXIF(d []byte) []byte {
	p := 2
	for p+4 <= len(d) {
		if d[p] != 0xFF {
			return nil
		}
		marker := d[p+1]
		if marker == 0xFF { // fill byte
			p++
			continue
		}
		if marker == 0xDA || marker == 0xD9 { // start of scan, end of image
			return nil
		}
		n := int(binary.BigEndian.Uint16(d[p+2:]))
		if n < 2 || p+2+n > len(d) {
			return nil
		}
		seg := d[p+4 : p+2+n]
		if marker == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return seg[6:]
		}
		p += 2 + n
	}
	return nil
}

// pngEXIF returns the content of the eXIf chunk (a TIFF block).
func pngEXIF(d []byte) []byte {
	p := 8
	for p+8 <= len(d) {
		n := int(binary.BigEndian.Uint32(d[p:]))
		typ := string(d[p+4 : p+8])
		if n < 0 || p+12+n > len(d) {
			return nil
		}
		if typ == "eXIf" {
			return d[p+8 : p+8+n]
		}
		if typ == "IDAT" || typ == "IEND" {
			// eXIf must come before the image data (PNG 1.5 extensions).
			return nil
		}
		p += 12 + n
	}
	return nil
}

// webpEXIF returns the content of the EXIF chunk of an extended WebP file.
func webpEXIF(d []byte) []byte {
	p := 12
	for p+8 <= len(d) {
		typ := string(d[p : p+4])
		n := int(binary.LittleEndian.Uint32(d[p+4:]))
		if n < 0 || p+8+n > len(d) {
			return nil
		}
		if typ == "EXIF" {
			b := d[p+8 : p+8+n]
			// Some writers keep the JPEG-style prefix.
			return bytes.TrimPrefix(b, []byte("Exif\x00\x00"))
		}
		p += 8 + n + n%2 // chunks are padded to even sizes
	}
	return nil
}

// tiffOrientation reads tag 0x0112 from IFD0 of a TIFF block, 0 if absent.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0
	}
	ifd := int64(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > int64(len(t)) {
		return 0
	}
	n := int64(bo.Uint16(t[ifd:]))
	for i := int64(0); i < n; i++ {
		e := ifd + 2 + 12*i
		if e+12 > int64(len(t)) {
			return 0
		}
		if bo.Uint16(t[e:]) != exifOrientationTag {
			continue
		}
		// Type SHORT (3), count 1: the value sits in the first two bytes of
		// the value field.
		if bo.Uint16(t[e+2:]) != 3 || bo.Uint32(t[e+4:]) != 1 {
			return 0
		}
		return int(bo.Uint16(t[e+8:]))
	}
	return 0
}

// orient returns src turned upright according to an EXIF orientation
// (1: as stored; 2..8: mirrored and/or rotated, 5..8 swapping width and
// height), as an NRGBA image with bounds at the origin.
func orient(src *image.NRGBA, o int) *image.NRGBA {
	if o <= 1 || o > 8 {
		return src
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	dst := image.NewNRGBA(image.Rect(0, 0, dw, dh))
	for y := 0; y < dh; y++ {
		for x := 0; x < dw; x++ {
			var sx, sy int
			switch o {
			case 2: // mirrored
				sx, sy = w-1-x, y
			case 3: // rotated 180
				sx, sy = w-1-x, h-1-y
			case 4: // flipped upside down
				sx, sy = x, h-1-y
			case 5: // transposed (mirrored along the main diagonal)
				sx, sy = y, x
			case 6: // stored rotated 90 counter-clockwise: turn it clockwise
				sx, sy = y, h-1-x
			case 7: // transversed (mirrored along the other diagonal)
				sx, sy = w-1-y, h-1-x
			case 8: // stored rotated 90 clockwise: turn it counter-clockwise
				sx, sy = w-1-y, x
			}
			si := src.PixOffset(b.Min.X+sx, b.Min.Y+sy)
			copy(dst.Pix[dst.PixOffset(x, y):dst.PixOffset(x, y)+4], src.Pix[si:si+4])
		}
	}
	return dst
}
