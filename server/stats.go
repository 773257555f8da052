package server

import (
	"bufio"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// getSystemStats answers in ComfyUI's shape. face0 has no Python; the Go
// version stands in for python_version so that clients printing it still work.
func (s *Server) getSystemStats(w http.ResponseWriter, r *http.Request) {
	total, free := memory()
	writeJSON(w, http.StatusOK, map[string]any{
		"system": map[string]any{
			"os":                        runtime.GOOS,
			"ram_total":                 total,
			"ram_free":                  free,
			"comfyui_version":           "face0-" + s.cfg.version,
			"face0_version":             s.cfg.version,
			"python_version":            runtime.Version(),
			"pytorch_version":           "",
			"embedded_python":           false,
			"required_frontend_version": "",
			"argv":                      os.Args,
		},
		"devices": []any{map[string]any{
			"name": "cpu", "type": "cpu", "index": nil,
			"vram_total": total, "vram_free": free, "torch_vram_total": 0, "torch_vram_free": 0,
		}},
	})
}

// memory reads total and available RAM from /proc/meminfo where there is one;
// elsewhere it reports what the Go runtime holds, which is better than nothing.
func memory() (total, free uint64) {
	f, err := os.Open("/proc/meminfo")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				continue
			}
			switch fields[0] {
			case "MemTotal:":
				total = kb * 1024
			case "MemAvailable:":
				free = kb * 1024
			}
		}
		if total > 0 {
			return total, free
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Sys, ms.Sys - ms.HeapInuse
}

// editorHandler serves the editor's files, or a page saying it is not built.
func (s *Server) editorHandler() http.Handler {
	if s.cfg.editor != nil {
		files, err := loadStatic(s.cfg.editor)
		if err == nil {
			return files
		}
		s.cfg.log.Printf("the editor's files: %v; serving them uncompressed and uncached", err)
		return http.FileServerFS(s.cfg.editor)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(placeholderPage))
	})
}

const placeholderPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>face0</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>face0</h1>
<p>The editor is not built into this binary. The API is running: see
<a href="object_info">/object_info</a> for the nodes, or submit prompts to
<code>POST /prompt</code> as you would to ComfyUI.</p>
<p>To build the editor: <code>cd editor &amp;&amp; npm ci &amp;&amp; npm run build</code>, then rebuild face0.</p>
</body></html>
`
