package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeOf returns a node of the editor's workflow by id.
func nodeOf(t *testing.T, p *page, id string) map[string]any {
	t.Helper()
	var wf map[string]any
	p.mustEval(`face0.workflow()`, &wf)
	for _, n := range wf["nodes"].([]any) {
		if n.(map[string]any)["id"] == id {
			return n.(map[string]any)
		}
	}
	return nil
}

func inputOf(t *testing.T, p *page, id, input string) any {
	t.Helper()
	n := nodeOf(t, p, id)
	if n == nil {
		t.Fatalf("no node %s", id)
	}
	in, _ := n["inputs"].(map[string]any)
	return in[input]
}

// noOverlap checks that a node overlaps no other node on the canvas.
func noOverlap(t *testing.T, p *page, id, what string) {
	t.Helper()
	var pairs []string
	p.mustEval(fmt.Sprintf(`(() => { const r = [...document.querySelectorAll('.react-flow__node-face0, .react-flow__node-note')].map(e => [e.dataset.id, e.getBoundingClientRect()]);
		const [, A] = r.find(([x]) => x === %q);
		return r.filter(([b, B]) => b !== %q && A.left < B.right && B.left < A.right && A.top < B.bottom && B.top < A.bottom).map(([b]) => b); })()`, id, id), &pairs)
	if len(pairs) > 0 {
		t.Errorf("%s: nodes overlap: %v", what, pairs)
	}
}

// TestEditorCanvas checks the canvas habits a ComfyUI user brings: node
// search on double-click and on a link dropped on the canvas (wiring the
// choice), the right-click menu (bypass, mute, colour, title), Ctrl+A,
// Ctrl+B, Ctrl+M, groups that move their nodes, reroute points, resizing,
// collapsing, notes, pasting at the mouse without overlap, picking a link
// up by its input dot, and a refused link saying why on screen.
func TestEditorCanvas(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed: run scripts/setup-browser.sh (or set FACE0_CHROMIUM) to run the editor's browser test")
	}
	if testing.Short() {
		t.Skip("the browser test is not short")
	}
	const token = "canvas-token"
	srv := startServerIn(t, token, t.TempDir(), false)
	shots := artifacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := startBrowser(t, chromium, 1600, 1000)
	p := b.newPage(ctx)
	p.navigate(editorURL(t, srv.base, token))
	p.waitFor(`document.querySelectorAll(".react-flow__node").length === 6`, 20*time.Second, "the default workflow")
	node := func(id string) string { return fmt.Sprintf(`.react-flow__node[data-id="%s"]`, id) }
	handle := func(id, kind, name string) string {
		return fmt.Sprintf(`.react-flow__node[data-id="%s"] .react-flow__handle-%s[data-handleid="%s"]`, id, kind, name)
	}
	// An empty spot of the canvas, below the default workflow.
	pane := p.rect(".react-flow__pane")
	emptyX, emptyY := pane.X+pane.W*0.25, pane.Y+pane.H-90

	// Double-click on the canvas: the node search, at the mouse.
	p.clickAt(emptyX, emptyY, "left", 2)
	p.waitFor(`document.querySelector('.f0-nodesearch input') === document.activeElement`, waitShort, "the node search")
	p.do("Input.insertText", map[string]any{"text": "grays"})
	p.waitFor(`document.querySelector('.f0-nodesearch-item.active').dataset.type === "Grayscale"`, waitShort, "Grayscale first in the search")
	p.key("Enter", 0)
	p.waitFor(q(node("grayscale_1")), waitShort, "the Grayscale node")
	gr := p.rect(node("grayscale_1"))
	if math.Abs(gr.X-emptyX) > 60 || math.Abs(gr.Y-emptyY) > 60 {
		t.Errorf("the searched node is at %.0f,%.0f, not at the double-click %.0f,%.0f", gr.X, gr.Y, emptyX, emptyY)
	}
	noOverlap(t, p, "grayscale_1", "after adding from the search")

	// A link from LoadImage's IMAGE dropped on the canvas: the search shows
	// only nodes that take an IMAGE, and wires the one chosen.
	x0, y0 := p.center(handle("load", "right", "IMAGE"))
	p.press(x0, y0)
	p.moveTo(x0, y0, emptyX+420, emptyY)
	p.release(emptyX+420, emptyY)
	p.waitFor(`document.querySelector('.f0-nodesearch input') && document.querySelector('.f0-nodesearch input').placeholder.includes("take IMAGE")`, waitShort, "the search for a node taking an IMAGE")
	var offered []string
	p.mustEval(`[...document.querySelectorAll('.f0-nodesearch-item')].map(e => e.dataset.type)`, &offered)
	for _, typ := range offered {
		if typ == "EncodeText" || typ == "LoadImage" || typ == "RandomEmbedding" {
			t.Errorf("the search for an IMAGE link offers %s, which takes no IMAGE (offered %v)", typ, offered)
		}
	}
	p.screenshot(filepath.Join(shots, "39-search-from-link.png"))
	if !strings.Contains(strings.Join(offered, ","), "Invert") {
		t.Errorf("the search for an IMAGE link does not offer Invert: %v", offered)
	}
	p.do("Input.insertText", map[string]any{"text": "invert"})
	p.key("Enter", 0)
	p.waitFor(q(node("invert_1")), waitShort, "the Invert node from the dropped link")
	if got := inputOf(t, p, "invert_1", "image"); fmt.Sprint(got) != "map[node:load output:IMAGE]" {
		t.Errorf("the new Invert's image is %v, want the link from load.IMAGE", got)
	}
	noOverlap(t, p, "invert_1", "after adding from a dropped link")

	// A link dragged from an empty input and dropped on the canvas: the
	// search shows only nodes that give that type, and wires the one chosen.
	x0, y0 = p.center(handle("grayscale_1", "left", "image"))
	p.press(x0, y0)
	p.moveTo(x0, y0, x0-250, y0+10)
	p.release(x0-250, y0+10)
	p.waitFor(`document.querySelector('.f0-nodesearch input') && document.querySelector('.f0-nodesearch input').placeholder.includes("give IMAGE")`, waitShort, "the search for a node giving an IMAGE")
	p.mustEval(`[...document.querySelectorAll('.f0-nodesearch-item')].map(e => e.dataset.type)`, &offered)
	for _, typ := range offered {
		if typ == "SaveImage" || typ == "EncodeText" || typ == "PreviewImage" {
			t.Errorf("the search for an IMAGE input offers %s, which gives no IMAGE (offered %v)", typ, offered)
		}
	}
	p.do("Input.insertText", map[string]any{"text": "loadimage"})
	p.waitFor(`document.querySelector('.f0-nodesearch-item.active').dataset.type === "LoadImage"`, waitShort, "LoadImage first in the search")
	p.key("Enter", 0)
	p.waitFor(q(node("loadimage_1")), waitShort, "the LoadImage node from the dropped link")
	if got := inputOf(t, p, "grayscale_1", "image"); fmt.Sprint(got) != "map[node:loadimage_1 output:IMAGE]" {
		t.Errorf("Grayscale's image is %v, want the link from the new loadimage_1.IMAGE", got)
	}
	noOverlap(t, p, "loadimage_1", "after adding from a link dropped off an input")

	// A refused link says why, on the canvas, while dragged and when dropped.
	x0, y0 = p.center(handle("load", "right", "IMAGE"))
	x1, y1 := p.center(handle("save_blur", "left", "filename_prefix"))
	p.press(x0, y0)
	p.moveTo(x0, y0, x1, y1)
	p.waitFor(`document.querySelector('.f0-link-hint') && document.querySelector('.f0-link-hint').textContent === "an IMAGE output cannot feed a STRING input"`,
		waitShort, "the refusal's reason beside the mouse")
	p.screenshot(filepath.Join(shots, "40-refused-link.png"))
	p.release(x1, y1)
	p.waitFor(`document.getElementById("link-refused") && document.getElementById("link-refused").textContent === "an IMAGE output cannot feed a STRING input"`,
		waitShort, "the refusal's reason after the drop")
	if fmt.Sprint(inputOf(t, p, "save_blur", "filename_prefix")) != "imagefx/blur" {
		t.Errorf("the refused link changed filename_prefix")
	}

	// The right-click menu: bypass, mute, colour and title.
	p.rightClick(node("invert") + " .f0-title-text")
	p.waitFor(`document.querySelector('.f0-menu [data-menu="bypass"]')`, waitShort, "the node menu")
	p.click(`.f0-menu [data-menu="bypass"]`)
	p.waitFor(q(node("invert")+` .f0-node.bypassed`), waitShort, "the node drawn bypassed")
	if m := nodeOf(t, p, "invert")["mode"]; m != "bypassed" {
		t.Errorf("after Bypass the node's mode is %v", m)
	}
	p.rightClick(node("invert") + " .f0-title-text")
	p.mustEval(`document.querySelector('.f0-menu [data-menu="colour"]').dispatchEvent(new MouseEvent("mouseover", {bubbles: true})), true`, nil)
	p.waitFor(`document.querySelector('.f0-menu [data-menu="colour-green"]')`, waitShort, "the colour menu")
	p.click(`.f0-menu [data-menu="colour-green"]`)
	p.waitFor(fmt.Sprintf(`face0.workflow().nodes.find(n => n.id === "invert").ui.color === "#232"`), waitShort, "the node's colour")
	p.rightClick(node("invert") + " .f0-title-text")
	p.click(`.f0-menu [data-menu="title"]`)
	p.waitFor(q(node("invert")+` .f0-title input`), waitShort, "the title editor")
	p.mustEval(node2js(node("invert")+` .f0-title input`)+`.select(), true`, nil)
	p.do("Input.insertText", map[string]any{"text": "Negative"})
	p.key("Enter", 0)
	p.waitFor(`face0.workflow().nodes.find(n => n.id === "invert").title === "Negative"`, waitShort, "the new title")

	// Ctrl+B and Ctrl+M on the selection; Ctrl+A selects everything.
	p.click(node("blur") + " .f0-title-text")
	p.key("m", modCtrl)
	p.waitFor(`face0.workflow().nodes.find(n => n.id === "blur").mode === "muted"`, waitShort, "Ctrl+M to mute")
	p.key("m", modCtrl)
	p.waitFor(`!face0.workflow().nodes.find(n => n.id === "blur").mode`, waitShort, "Ctrl+M again to unmute")
	p.click(node("invert") + " .f0-title-text")
	p.key("b", modCtrl)
	p.waitFor(`!face0.workflow().nodes.find(n => n.id === "invert").mode`, waitShort, "Ctrl+B to un-bypass")
	p.click(".react-flow__pane")
	p.key("a", modCtrl)
	p.waitFor(`document.querySelectorAll('.react-flow__node.selected').length === document.querySelectorAll('.react-flow__node').length`, waitShort, "Ctrl+A to select every node")
	p.click(".react-flow__pane")

	// Collapse keeps the node's links.
	edges := count(p, ".react-flow__edge")
	p.click(node("scale") + " .f0-collapse")
	p.waitFor(q(node("scale")+` .f0-node.collapsed`), waitShort, "the node to collapse")
	if n := count(p, ".react-flow__edge-path"); n != edges {
		t.Errorf("%d links drawn after collapsing, want %d", n, edges)
	}
	if c := nodeOf(t, p, "scale")["ui"].(map[string]any)["collapsed"]; c != true {
		t.Errorf("ui.collapsed is %v after collapsing", c)
	}

	// Resize a node by its right edge.
	p.click(node("blur") + " .f0-title-text")
	before := p.rect(node("blur"))
	rx, ry := before.X+before.W-2, before.Y+before.H/2
	p.press(rx, ry)
	p.moveTo(rx, ry, rx+50, ry)
	p.release(rx+50, ry)
	p.waitFor(`(() => { const s = face0.workflow().nodes.find(n => n.id === "blur").ui.size; return s && s[0] > 280; })()`, waitShort, "the node to be wider")

	// A group around a node (Ctrl+G) moves it when dragged by its title.
	p.click(node("grayscale_1") + " .f0-title-text")
	p.waitFor(`face0.selected().join() === "grayscale_1"`, waitShort, "Grayscale to be selected alone")
	p.key("g", modCtrl)
	p.waitFor(`document.querySelector('.react-flow__node-group')`, waitShort, "Ctrl+G to make a group")

	gBefore, frameBefore := p.rect(node("grayscale_1")), p.rect(".react-flow__node-group")
	tx, ty := p.center(".react-flow__node-group .f0-frame-title")
	p.press(tx, ty)
	p.moveTo(tx, ty, tx+150, ty+40)
	p.release(tx+150, ty+40)
	gAfter, frameAfter := p.rect(node("grayscale_1")), p.rect(".react-flow__node-group")
	if dx, dy := frameAfter.X-frameBefore.X, frameAfter.Y-frameBefore.Y; dx < 50 || math.Abs(gAfter.X-gBefore.X-dx) > 2 || math.Abs(gAfter.Y-gBefore.Y-dy) > 2 {
		t.Errorf("the group moved by %.0f,%.0f and the node in it by %.0f,%.0f", dx, dy, gAfter.X-gBefore.X, gAfter.Y-gBefore.Y)
	}

	// A reroute point on a link: drawn through it, the same link underneath.
	var mid struct{ X, Y float64 }
	p.mustEval(`(() => { const path = document.querySelector('.react-flow__edge[data-id="invert:IMAGE->save_invert:images"] .react-flow__edge-path');
		const pt = path.getPointAtLength(path.getTotalLength() / 2), m = path.getScreenCTM();
		return {x: pt.x * m.a + pt.y * m.c + m.e, y: pt.x * m.b + pt.y * m.d + m.f}; })()`, &mid)
	p.clickAt(mid.X, mid.Y, "right", 1)

	p.click(`.f0-menu [data-menu="reroute-here"]`)
	p.waitFor(`document.querySelector('.react-flow__node-reroute')`, waitShort, "the reroute point")
	if got := fmt.Sprint(inputOf(t, p, "save_invert", "images")); got != "map[node:invert output:IMAGE]" {
		t.Errorf("through the reroute, save_invert.images is %v", got)
	}
	if via := nodeOf(t, p, "save_invert")["ui"].(map[string]any)["via"]; fmt.Sprint(via) != "map[images:reroute_1]" {
		t.Errorf("save_invert's ui.via is %v, want images through reroute_1", via)
	}

	// A note from the canvas menu.
	p.clickAt(emptyX+700, emptyY-40, "right", 1)
	p.click(`.f0-menu [data-menu="add-note"]`)
	p.waitFor(`document.querySelector('.react-flow__node-note textarea')`, waitShort, "the note")
	p.click(`.react-flow__node-note textarea`)
	p.do("Input.insertText", map[string]any{"text": "try a wider blur"})
	p.waitFor(`(face0.workflow().ui.notes || []).some(n => n.text === "try a wider blur")`, waitShort, "the note's text in the workflow")

	// Add a node and remove it again through the right-click menus, at an
	// empty spot of the canvas (the first one found scanning from the top).
	var spot struct{ X, Y float64 }
	p.mustEval(`(() => { const pane = document.querySelector('.react-flow__pane'), r = pane.getBoundingClientRect();
		for (let y = r.top + 40; y < r.bottom - 40; y += 30) for (let x = r.left + 40; x < r.right - 40; x += 30)
			if (document.elementFromPoint(x, y) === pane) return {x, y};
		throw new Error("no empty spot on the canvas"); })()`, &spot)
	p.clickAt(spot.X, spot.Y, "right", 1)
	p.waitFor(`document.querySelector('.f0-menu [data-menu="add-node"]')`, waitShort, "the canvas menu")
	p.click(`.f0-menu [data-menu="add-node"]`)
	p.waitFor(`document.querySelector('.f0-nodesearch input') === document.activeElement`, waitShort, "the node search from the menu")
	p.do("Input.insertText", map[string]any{"text": "boxblur"})
	p.waitFor(`document.querySelector('.f0-nodesearch-item.active').dataset.type === "BoxBlur"`, waitShort, "BoxBlur first in the search")
	p.key("Enter", 0)
	p.waitFor(q(node("boxblur_1")), waitShort, "the BoxBlur node from the menu")
	noOverlap(t, p, "boxblur_1", "after adding from the canvas menu")
	p.rightClick(node("boxblur_1") + " .f0-title-text")
	p.waitFor(`document.querySelector('.f0-menu [data-menu="remove"]')`, waitShort, "the node menu's Remove")
	p.click(`.f0-menu [data-menu="remove"]`)
	p.waitFor(`!document.querySelector('.react-flow__node[data-id="boxblur_1"]')`, waitShort, "Remove to delete the node")

	// Copy, then paste at the mouse, clear of other nodes.
	p.click(node("scale") + " .f0-title-text")
	p.key("c", modCtrl)
	px, py := pane.X+pane.W*0.6, pane.Y+pane.H*0.75
	p.mouse("mouseMoved", px, py, 0)
	p.key("v", modCtrl)
	p.waitFor(q(node("imagescale_1")), waitShort, "the pasted node")
	pr := p.rect(node("imagescale_1"))
	if math.Hypot(pr.X-px, pr.Y-py) > 200 {
		t.Errorf("pasted at %.0f,%.0f, far from the mouse at %.0f,%.0f", pr.X, pr.Y, px, py)
	}
	noOverlap(t, p, "imagescale_1", "after pasting")

	// Pick a link up by its input dot and drop it on another input.
	x0, y0 = p.center(handle("save_invert", "left", "images"))
	x1, y1 = p.center(handle("grayscale_1", "left", "image"))
	p.press(x0, y0)
	p.moveTo(x0, y0, x1, y1)
	p.release(x1, y1)
	p.waitFor(`(() => { const n = face0.workflow().nodes; const g = n.find(x => x.id === "grayscale_1").inputs.image, s = n.find(x => x.id === "save_invert").inputs.images;
		return g && g.node === "invert" && !s; })()`, waitShort, "the link to move from save_invert to grayscale_1")
	p.screenshot(filepath.Join(shots, "41-canvas.png"))

	// The whole graph survives undo's snapshots and a reload.
	var wf map[string]any
	p.waitFor(`face0.settled()`, 30*time.Second, "the graph to settle")
	p.mustEval(`face0.workflow()`, &wf)
	p.navigate(editorURL(t, srv.base, token))
	p.waitFor(`window.face0 && document.querySelector('.react-flow__node-group') && document.querySelector('.react-flow__node-note')`, 20*time.Second, "the graph after a reload")
	var after map[string]any
	p.mustEval(`face0.workflow()`, &after)
	a, _ := json.Marshal(wf)
	c, _ := json.Marshal(after)
	if string(a) != string(c) {
		t.Errorf("the graph changed across a reload:\n%s\n%s", a, c)
	}
}

// q is a JavaScript expression for the first element a selector matches.
func q(selector string) string { return node2js(selector) }

func node2js(selector string) string {
	b, _ := json.Marshal(selector)
	return "document.querySelector(" + string(b) + ")"
}
