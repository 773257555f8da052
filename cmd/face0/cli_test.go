package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The CLI's habits: help lists what the README uses, typos get a
// suggestion, stray arguments are refused, -h is not an error.
func TestCLIHabits(t *testing.T) {
	c := newCLI(t)
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	help, _, code := c.raw(t, "--help")
	if code != 0 {
		t.Fatalf("face0 --help: exit %d", code)
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`bin/face0 ([a-z-]+)`).FindAllStringSubmatch(string(readme), -1) {
		used[m[1]] = true
	}
	if len(used) < 5 {
		t.Fatalf("the README uses only %v", used)
	}
	for cmd := range used {
		if !strings.Contains(help, "face0 "+cmd+" ") {
			t.Errorf("face0 --help does not list %q, which the README uses:\n%s", cmd, help)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{[]string{"rnu", "x.json"}, 2, "did you mean run?"},
		{[]string{"model", "list"}, 2, "did you mean models?"},
		{[]string{"zzzzzz"}, 2, `unknown command "zzzzzz"`},
		{[]string{"nodes", "foo"}, 2, `unexpected argument "foo"`},
		{[]string{"serve", "foo"}, 2, `unexpected argument "foo"`},
		{[]string{"version", "foo"}, 2, `unexpected argument "foo"`},
		{[]string{"run", "a.json", "b.json"}, 2, "usage: face0 run"},
		{[]string{"run", "--no-such-flag", "a.json"}, 2, "flag provided but not defined"},
		{[]string{"run", "-h"}, 0, "usage: face0 run"},
		{[]string{"help", "train"}, 0, "usage: face0 train"},
		{[]string{"help", "nope"}, 2, `unknown command "nope"`},
		{[]string{"version"}, 0, "face0 "},
	} {
		stdout, stderr, code := c.raw(t, tc.args...)
		if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
			t.Errorf("face0 %s: exit %d, want %d and %q in\n%s%s", strings.Join(tc.args, " "), code, tc.code, tc.want, stdout, stderr)
		}
		if strings.Contains(stderr, "face0: exit ") {
			t.Errorf("face0 %s printed its exit status as an error: %s", strings.Join(tc.args, " "), stderr)
		}
	}
}
