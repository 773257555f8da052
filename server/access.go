package server

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// tokenCookie keeps a browser's token after it opened the page with ?token=.
const tokenCookie = "face0_token"

// guard applies what every route needs: the token, and refusing cross-site
// requests that change state (a page on another site must not be able to
// queue prompts on a server listening on localhost).
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Referrer-Policy", "no-referrer")
		if s.cfg.token == "" && !s.hostAllowed(r.Host) {
			writeError(w, http.StatusForbidden, "host_not_allowed",
				fmt.Sprintf("this server answers requests addressed to localhost, its IP addresses or its allowed names, not to %q: start it with --allow-host %s if that name is this machine's, or give it a --token", r.Host, hostName(r.Host)), nil)
			return
		}
		if s.cfg.token != "" {
			ok, fromQuery := s.authorized(r)
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="face0"`)
				writeError(w, http.StatusUnauthorized, "unauthorized",
					"this server needs its token: send the header \"Authorization: Bearer TOKEN\" (browsers: open the page with ?token=TOKEN once)", nil)
				return
			}
			if fromQuery {
				// Lets the browser load the editor's assets and open /ws after
				// one visit with ?token=; SameSite keeps other sites from using it.
				http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.cfg.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !s.originAllowed(r) {
			writeError(w, http.StatusForbidden, "cross_origin",
				fmt.Sprintf("requests from the page at %s are not allowed; start the server with that origin allowed, or call the API from the same origin", r.Header.Get("Origin")), nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized checks the bearer header, the cookie, or (on GET, since browsers
// cannot set headers on websockets and <img> tags) the token query parameter.
func (s *Server) authorized(r *http.Request) (ok, fromQuery bool) {
	want := []byte(s.cfg.token)
	eq := func(got string) bool { return subtle.ConstantTimeCompare([]byte(got), want) == 1 }
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		return strings.EqualFold(scheme, "Bearer") && eq(strings.TrimSpace(tok)), false
	}
	if c, err := r.Cookie(tokenCookie); err == nil && eq(c.Value) {
		return true, false
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if q := r.URL.Query().Get("token"); q != "" && eq(q) {
			return true, true
		}
	}
	return false, false
}

// hostAllowed guards a server without a token against DNS rebinding: a page
// on evil.example whose name the attacker re-points at 127.0.0.1 talks to
// this server as a same-origin page (its Origin matches its Host, so the
// cross-origin check lets it through), but its requests still carry Host
// evil.example. Only names that are this machine are accepted: localhost and
// *.localhost (browsers resolve those to loopback themselves), IP literals
// (a rebinding needs a name) and the names given with WithAllowedHosts. With a
// token the Host is not checked: the token is what such a page lacks.
func (s *Server) hostAllowed(host string) bool {
	h := hostName(host)
	if h == "" || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true // HTTP/1.0 requests may have no Host; browsers always send one
	}
	if net.ParseIP(strings.SplitN(h, "%", 2)[0]) != nil {
		return true
	}
	return s.cfg.allowHosts[h]
}

// hostName is the lower-case name in a Host header or listen address,
// without port, brackets or trailing dot.
func hostName(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// originAllowed accepts requests without an Origin (scripts, curl), from the
// same host, or from an allowed origin.
func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || s.cfg.allowOrigins[o] {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// IsLoopback reports whether addr (host:port) only listens on this machine.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
