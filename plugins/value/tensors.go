package value

import pb "github.com/face0/face0/plugins/proto"

// EachTensor calls f on every tensor in v, inside lists and records too.
func EachTensor(v *pb.Value, f func(*pb.Tensor)) {
	switch k := v.GetKind().(type) {
	case *pb.Value_Tensor:
		f(k.Tensor)
	case *pb.Value_List:
		for _, e := range k.List.Items {
			EachTensor(e, f)
		}
	case *pb.Value_Record:
		for _, e := range k.Record.Fields {
			EachTensor(e, f)
		}
	}
}

// RewriteTensors returns v with every tensor replaced by what f makes of it
// (f returns its argument to keep a tensor). Only the path down to the
// tensors that change is copied: v itself is never modified, since values
// may be shared with other nodes (and the cache).
func RewriteTensors(v *pb.Value, f func(*pb.Tensor) (*pb.Tensor, error)) (*pb.Value, error) {
	switch k := v.GetKind().(type) {
	case *pb.Value_Tensor:
		t, err := f(k.Tensor)
		if err != nil || t == k.Tensor {
			return v, err
		}
		return &pb.Value{Type: v.Type, Kind: &pb.Value_Tensor{Tensor: t}}, nil
	case *pb.Value_List:
		var items []*pb.Value
		for i, e := range k.List.Items {
			ne, err := RewriteTensors(e, f)
			if err != nil {
				return nil, err
			}
			if ne != e && items == nil {
				items = append(make([]*pb.Value, 0, len(k.List.Items)), k.List.Items[:i]...)
			}
			if items != nil {
				items = append(items, ne)
			}
		}
		if items == nil {
			return v, nil
		}
		return &pb.Value{Type: v.Type, Kind: &pb.Value_List{List: &pb.List{Items: items}}}, nil
	case *pb.Value_Record:
		var fields map[string]*pb.Value
		for name, e := range k.Record.Fields {
			ne, err := RewriteTensors(e, f)
			if err != nil {
				return nil, err
			}
			if ne == e {
				continue
			}
			if fields == nil {
				fields = make(map[string]*pb.Value, len(k.Record.Fields))
				for n, x := range k.Record.Fields {
					fields[n] = x
				}
			}
			fields[name] = ne
		}
		if fields == nil {
			return v, nil
		}
		return &pb.Value{Type: v.Type, Kind: &pb.Value_Record{Record: &pb.Record{Fields: fields}}}, nil
	}
	return v, nil
}

// RewriteTensorsIn applies RewriteTensors to every value of a node's inputs
// or outputs, into a new map.
func RewriteTensorsIn(values map[string]*pb.Value, f func(*pb.Tensor) (*pb.Tensor, error)) (map[string]*pb.Value, error) {
	out := make(map[string]*pb.Value, len(values))
	for k, v := range values {
		nv, err := RewriteTensors(v, f)
		if err != nil {
			return nil, err
		}
		out[k] = nv
	}
	return out, nil
}
