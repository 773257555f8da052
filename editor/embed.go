// Package editor holds the browser graph editor: its TypeScript sources and
// the built files in dist/, which the face0 binary embeds and serves.
//
// dist/ is committed so that `go build` needs no npm; after changing the
// sources, run `make editor` (editor/build.sh), which rebuilds dist/ and
// its build stamp. TestBuildStamp fails when the two disagree.
package editor

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// FS returns the built editor: index.html at its root, assets below.
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path; cannot happen
	}
	return sub
}
