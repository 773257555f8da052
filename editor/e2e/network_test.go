package e2e

// What the page moved over the wire, from the DevTools Network events.

import "encoding/json"

// transfer is one network request as the browser saw it.
type transfer struct {
	URL       string
	Status    int
	Type      string // Document, Script, Stylesheet, Fetch, ...
	FromCache bool
	Bytes     float64 // encodedDataLength: headers and body on the wire
}

// recordNetwork starts counting the page's requests afresh.
func (p *page) recordNetwork() {
	p.t.Helper()
	p.netMu.Lock()
	p.net = map[string]*transfer{}
	p.netMu.Unlock()
	p.do("Network.enable", nil)
}

func (p *page) noteNetwork(m cdpMessage) {
	var e struct {
		RequestID         string  `json:"requestId"`
		Type              string  `json:"type"`
		EncodedDataLength float64 `json:"encodedDataLength"`
		Response          struct {
			URL               string `json:"url"`
			Status            int    `json:"status"`
			FromDiskCache     bool   `json:"fromDiskCache"`
			FromMemoryCache   bool   `json:"fromMemoryCache"`
			FromServiceWorker bool   `json:"fromServiceWorker"`
		} `json:"response"`
	}
	if json.Unmarshal(m.Params, &e) != nil {
		return
	}
	p.netMu.Lock()
	defer p.netMu.Unlock()
	if p.net == nil {
		return
	}
	tr := p.net[e.RequestID]
	if tr == nil {
		tr = &transfer{}
		p.net[e.RequestID] = tr
	}
	switch m.Method {
	case "Network.responseReceived":
		tr.URL, tr.Status, tr.Type = e.Response.URL, e.Response.Status, e.Type
		tr.FromCache = tr.FromCache || e.Response.FromDiskCache || e.Response.FromMemoryCache
	case "Network.requestServedFromCache":
		tr.FromCache = true
	case "Network.loadingFinished":
		tr.Bytes = e.EncodedDataLength
	}
}

// transfers returns what was recorded.
func (p *page) transfers() []transfer {
	p.netMu.Lock()
	defer p.netMu.Unlock()
	var out []transfer
	for _, tr := range p.net {
		if tr.URL != "" {
			out = append(out, *tr)
		}
	}
	return out
}
