package engine

import (
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// A choice refused from a long list (an input folder of images) names a few
// choices and counts the rest, instead of printing them all.
func TestEnumMessageIsShort(t *testing.T) {
	var many []any
	for i := range 500 {
		many = append(many, "image-"+strings.Repeat("x", i%7)+".png")
	}
	msg := kindMessage(&kind.Enum{Got: "gone.png", Want: many})
	if len(msg) > 200 || !strings.Contains(msg, "one of 500 choices") || !strings.Contains(msg, "and 495 more") {
		t.Errorf("message for 500 choices (%d bytes): %s", len(msg), msg)
	}
	if msg := kindMessage(&kind.Enum{Got: "c", Want: []any{"a", "b"}}); msg != "must be one of 'a', 'b'" {
		t.Errorf("message for two choices: %q", msg)
	}
}
