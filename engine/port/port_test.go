package port

import (
	"strings"
	"testing"
)

func TestAssignable(t *testing.T) {
	tests := []struct {
		from, to Type
		ok       bool
	}{
		{Image, Image, true},
		{Image, Latent, false},
		{Int, Float, true},
		{Float, Int, false},
		{String, Enum, true},
		{Any, Latent, true},
		{Image, Any, true},
		{"FACE_EMBEDDING:faceapi-128", "FACE_EMBEDDING:faceapi-128", true},
		{"FACE_EMBEDDING:faceapi-128", "FACE_EMBEDDING:facenet-512", false},
		{"FACE_EMBEDDING", "FACE_EMBEDDING:facenet-512", true},
		{"FACE_EMBEDDING:faceapi-128", "FACE_EMBEDDING", true},
	}
	for _, tt := range tests {
		ok, why := Assignable(tt.from, tt.to)
		if ok != tt.ok {
			t.Errorf("Assignable(%s, %s) = %v (%s), want %v", tt.from, tt.to, ok, why, tt.ok)
		}
		if !ok && why == "" {
			t.Errorf("Assignable(%s, %s) refused without a reason", tt.from, tt.to)
		}
	}
}

func TestTypeParts(t *testing.T) {
	x := Type("FACE_EMBEDDING:faceapi-128")
	if x.Base() != FaceEmbedding || x.Param() != "faceapi-128" {
		t.Fatalf("Base/Param = %q/%q", x.Base(), x.Param())
	}
	if Image.Param() != "" || Image.Base() != Image {
		t.Fatal("unparametrised type split wrongly")
	}
	if x.WithParam("") != FaceEmbedding || Image.WithParam("p") != "IMAGE:p" {
		t.Fatal("WithParam")
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	if !r.Known("FACE_EMBEDDING:x") || r.Known("NOPE") {
		t.Fatal("Known")
	}
	for _, bad := range []Type{"lower", "HAS SPACE", "X:with space", "", "X:a:b"} {
		if err := r.Declare(Info{Name: bad}); err == nil {
			t.Errorf("Declare(%q) accepted", bad)
		}
	}
	if err := r.Declare(Info{Name: "MY_TYPE", Color: "red"}); err != nil {
		t.Fatal(err)
	}
	if !r.Known("MY_TYPE") {
		t.Fatal("declared type unknown")
	}
}

// Refusals read as English: "an IMAGE", "a STRING".
func TestAssignableWording(t *testing.T) {
	for _, tt := range []struct {
		from, to Type
		want     string
	}{
		{Image, Int, "an IMAGE output cannot feed an INT input"},
		{Latent, String, "a LATENT output cannot feed a STRING input"},
		{"FACE_EMBEDDING:faceapi-128", "FACE_EMBEDDING:facenet-512", `a FACE_EMBEDDING:faceapi-128 output cannot feed a FACE_EMBEDDING:facenet-512 input: "faceapi-128" and "facenet-512" are different spaces`},
	} {
		_, why := Assignable(tt.from, tt.to)
		if !strings.HasPrefix(why, tt.want) {
			t.Errorf("Assignable(%s, %s) says %q, want it to begin %q", tt.from, tt.to, why, tt.want)
		}
	}
	if got := A(Enum); got != "an ENUM" {
		t.Errorf("A(ENUM) = %q", got)
	}
}
