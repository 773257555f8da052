package server

import (
	"compress/gzip"
	"net/http"
)

// gzipJSON gzips a route's answer for clients that accept it. It is for the
// JSON answers that grow with use: the history and the queue carry every
// prompt's workflow (a few KB each), and the queue panel reads up to 200 runs
// after each one ends. JSON compresses about tenfold.
func gzipJSON(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if !acceptsGzip(r) || r.Method == http.MethodHead {
			h(w, r)
			return
		}
		gw := &gzipWriter{ResponseWriter: w}
		defer gw.close()
		h(gw, r)
	}
}

// gzipWriter compresses what a handler writes, once it has said its status.
type gzipWriter struct {
	http.ResponseWriter
	zw          *gzip.Writer
	wroteHeader bool
}

var _ http.ResponseWriter = (*gzipWriter)(nil)

func (g *gzipWriter) WriteHeader(code int) {
	if g.wroteHeader {
		return
	}
	g.wroteHeader = true
	// A status without a body (204, 304) keeps its plain form.
	if code != http.StatusNoContent && code != http.StatusNotModified && g.Header().Get("Content-Encoding") == "" {
		g.Header().Set("Content-Encoding", "gzip")
		g.Header().Del("Content-Length")
		g.zw = gzip.NewWriter(g.ResponseWriter)
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipWriter) Write(b []byte) (int, error) {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	if g.zw != nil {
		return g.zw.Write(b)
	}
	return g.ResponseWriter.Write(b)
}

func (g *gzipWriter) close() {
	if !g.wroteHeader {
		// The handler wrote nothing: an empty 200, as net/http would send.
		g.wroteHeader = true
		return
	}
	if g.zw != nil {
		_ = g.zw.Close()
	}
}
