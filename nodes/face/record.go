package face

import (
	"errors"
	"fmt"
	"image"

	"github.com/face0/face0/ml/crop"
	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// Port types of this pack beyond the built-in ones.
const (
	typeFace     = "FACE"
	typeFaceList = "FACE_LIST"
	typeEmbed    = "FACE_EMBEDDING"
)

// Face is a detected face as it travels between nodes: a FACE record with
//
//	backend     string       the detector that found it
//	score       float        its score (a probability, or pigo's cascade score)
//	box         [x1,y1,x2,y2] the detector's box, image pixels
//	landmarks   [[x,y],...]  five points (eyes, nose, mouth corners) from mtcnn; absent otherwise
//	region      [x1,y1,x2,y2] the part of the image the crop shows (may extend past its edges)
//	image_size  [w,h]        the size of the image it was found in
//	crop        IMAGE        the Face0 crop, [1,S,S,3]
//
// A null value (not a record) means "no face" (DetectFace with no_face=pass).
type Face struct {
	Backend   string
	Score     float64
	Box       crop.Box
	Landmarks [][2]float64
	Region    crop.Box
	ImageW    int
	ImageH    int
	Crop      *image.NRGBA
}

func floats(vs ...float64) *pb.Value {
	items := make([]*pb.Value, len(vs))
	for i, v := range vs {
		items[i] = value.Float(v)
	}
	return &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: items}}}
}

func boxValue(b crop.Box) *pb.Value { return floats(b.X1, b.Y1, b.X2, b.Y2) }

// Value encodes f as a FACE record.
func (f *Face) Value() (*pb.Value, error) {
	if f.Crop == nil {
		return nil, errors.New("face has no crop")
	}
	img, err := value.Images(f.Crop)
	if err != nil {
		return nil, err
	}
	fields := map[string]*pb.Value{
		"backend":    value.String(f.Backend),
		"score":      value.Float(f.Score),
		"box":        boxValue(f.Box),
		"region":     boxValue(f.Region),
		"image_size": &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: []*pb.Value{value.Int(int64(f.ImageW)), value.Int(int64(f.ImageH))}}}},
		"crop":       img,
	}
	if len(f.Landmarks) > 0 {
		pts := make([]*pb.Value, len(f.Landmarks))
		for i, p := range f.Landmarks {
			pts[i] = floats(p[0], p[1])
		}
		fields["landmarks"] = &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: pts}}}
	}
	return &pb.Value{Type: typeFace, Kind: &pb.Value_Record{Record: &pb.Record{Fields: fields}}}, nil
}

// nullFace is the "no face" FACE value.
func nullFace() *pb.Value { return &pb.Value{Type: typeFace, Kind: &pb.Value_Null{Null: &pb.Null{}}} }

func floatList(v *pb.Value, n int, what string) ([]float64, error) {
	l, ok := v.GetKind().(*pb.Value_List)
	if !ok || len(l.List.Items) != n {
		return nil, fmt.Errorf("FACE field %q must be a list of %d numbers, got %s", what, n, value.Kind(v))
	}
	out := make([]float64, n)
	for i, it := range l.List.Items {
		f, err := value.AsFloat(it)
		if err != nil {
			return nil, fmt.Errorf("FACE field %q item %d: %w", what, i, err)
		}
		out[i] = f
	}
	return out, nil
}

// ParseFace decodes a FACE record. It refuses the null "no face" value; test
// for it with value.IsNull first.
func ParseFace(v *pb.Value) (*Face, error) {
	r, ok := v.GetKind().(*pb.Value_Record)
	if !ok {
		return nil, fmt.Errorf("a FACE is a record, got %s", value.Kind(v))
	}
	fl := r.Record.Fields
	f := &Face{}
	var err error
	if s, ok := fl["backend"]; ok {
		if f.Backend, err = value.AsString(s); err != nil {
			return nil, fmt.Errorf("FACE field \"backend\": %w", err)
		}
	}
	if s, ok := fl["score"]; ok {
		if f.Score, err = value.AsFloat(s); err != nil {
			return nil, fmt.Errorf("FACE field \"score\": %w", err)
		}
	}
	for _, b := range []struct {
		name string
		dst  *crop.Box
	}{{"box", &f.Box}, {"region", &f.Region}} {
		bv, ok := fl[b.name]
		if !ok {
			return nil, fmt.Errorf("FACE record has no %q field", b.name)
		}
		c, err := floatList(bv, 4, b.name)
		if err != nil {
			return nil, err
		}
		*b.dst = crop.Box{X1: c[0], Y1: c[1], X2: c[2], Y2: c[3]}
	}
	if sv, ok := fl["image_size"]; ok {
		s, err := floatList(sv, 2, "image_size")
		if err != nil {
			return nil, err
		}
		f.ImageW, f.ImageH = int(s[0]), int(s[1])
	}
	if lv, ok := fl["landmarks"]; ok {
		l, ok := lv.GetKind().(*pb.Value_List)
		if !ok {
			return nil, fmt.Errorf("FACE field \"landmarks\" must be a list of [x, y] points, got %s", value.Kind(lv))
		}
		for _, p := range l.List.Items {
			xy, err := floatList(p, 2, "landmarks")
			if err != nil {
				return nil, err
			}
			f.Landmarks = append(f.Landmarks, [2]float64{xy[0], xy[1]})
		}
	}
	cv, ok := fl["crop"]
	if !ok {
		return nil, errors.New("FACE record has no \"crop\" image")
	}
	imgs, err := value.AsImages(cv)
	if err != nil {
		return nil, fmt.Errorf("FACE field \"crop\": %w", err)
	}
	if len(imgs) != 1 {
		return nil, fmt.Errorf("FACE field \"crop\" holds %d images, want 1", len(imgs))
	}
	f.Crop = imgs[0]
	return f, nil
}
