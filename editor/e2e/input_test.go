package e2e

// What a user does with the mouse and the keyboard, sent through the
// DevTools protocol: clicks wait until they would reach their element.

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// center returns the middle of the first element matching a CSS selector,
// once a click there would reach it: an element can exist before it can be
// clicked (React Flow keeps a new node hidden until it has measured it, a
// closing dialog still covers the page for a frame), and a user clicks what
// they see.
func (p *page) center(selector string) (float64, float64) {
	p.t.Helper()
	var r struct {
		X, Y float64
		Hit  bool
		Top  string
	}
	sel, _ := json.Marshal(selector)
	expr := fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) throw new Error("no element " + %s);
		e.scrollIntoView({block: "nearest"}); const r = e.getBoundingClientRect(); const x = r.x + r.width/2, y = r.y + r.height/2;
		const top = document.elementFromPoint(x, y);
		return {x, y, hit: !!top && (top === e || e.contains(top)), top: top ? top.tagName + "." + top.className : "nothing (outside the page or hidden)"}; })()`, sel, sel)
	// Twice at the same place: scrollIntoView may move a canvas (which
	// React Flow scrolls back at once) or the element may be moving.
	var prevX, prevY float64
	prevHit := false
	for deadline := time.Now().Add(waitShort); ; time.Sleep(20 * time.Millisecond) {
		if err := p.eval(expr, &r); err != nil {
			p.t.Fatal(err)
		}
		if r.Hit && prevHit && r.X == prevX && r.Y == prevY {
			return r.X, r.Y
		}
		prevX, prevY, prevHit = r.X, r.Y, r.Hit
		if time.Now().After(deadline) {
			p.t.Fatalf("%s cannot be clicked after %v: at its middle is %s", selector, waitShort, r.Top)
		}
	}
}

// click presses and releases the left mouse button over an element, as a user would.
func (p *page) click(selector string) {
	p.t.Helper()
	x, y := p.center(selector)
	p.mouse("mouseMoved", x, y, 0)
	p.mouse("mousePressed", x, y, 1)
	p.mouse("mouseReleased", x, y, 1)
}

func (p *page) mouse(typ string, x, y float64, clicks int) {
	p.t.Helper()
	params := map[string]any{"type": typ, "x": x, "y": y}
	if clicks > 0 {
		params["button"] = "left"
		params["clickCount"] = clicks
		params["buttons"] = 1
	}
	if typ == "mouseReleased" {
		params["buttons"] = 0
	}
	p.do("Input.dispatchMouseEvent", params)
}

// drag moves the mouse from one point to another with the button held.
func (p *page) drag(x0, y0, x1, y1 float64) {
	p.t.Helper()
	p.mouse("mouseMoved", x0, y0, 0)
	p.do("Input.dispatchMouseEvent", map[string]any{"type": "mousePressed", "x": x0, "y": y0, "button": "left", "buttons": 1, "clickCount": 1})
	const steps = 12
	for i := 1; i <= steps; i++ {
		f := float64(i) / steps
		p.do("Input.dispatchMouseEvent", map[string]any{"type": "mouseMoved", "x": x0 + (x1-x0)*f, "y": y0 + (y1-y0)*f, "button": "left", "buttons": 1})
		time.Sleep(10 * time.Millisecond)
	}
	p.do("Input.dispatchMouseEvent", map[string]any{"type": "mouseReleased", "x": x1, "y": y1, "button": "left", "buttons": 0, "clickCount": 1})
}

// key presses a key ("z", "Delete", "Enter") with modifiers.
func (p *page) key(key string, mods int) {
	p.t.Helper()
	code, vk := "", 0
	switch {
	case len(key) == 1 && key[0] >= 'a' && key[0] <= 'z':
		code, vk = "Key"+strings.ToUpper(key), int(key[0]-'a'+'A')
	case key == "Delete":
		code, vk = "Delete", 46
	case key == "Backspace":
		code, vk = "Backspace", 8
	case key == "Enter":
		code, vk = "Enter", 13
	case key == "Escape":
		code, vk = "Escape", 27
	case key == "ArrowRight":
		code, vk = "ArrowRight", 39
	case key == "ArrowLeft":
		code, vk = "ArrowLeft", 37
	case key == "ArrowDown":
		code, vk = "ArrowDown", 40
	}
	k := key
	if mods&modShift != 0 && len(k) == 1 {
		k = strings.ToUpper(k)
	}
	base := map[string]any{"key": k, "code": code, "windowsVirtualKeyCode": vk, "modifiers": mods}
	down := map[string]any{"type": "rawKeyDown"}
	up := map[string]any{"type": "keyUp"}
	for kk, v := range base {
		down[kk] = v
		up[kk] = v
	}
	p.do("Input.dispatchKeyEvent", down)
	p.do("Input.dispatchKeyEvent", up)
}

// typeInto focuses a text field, selects its text and types over it.
func (p *page) typeInto(selector, text string) {
	p.t.Helper()
	p.click(selector)
	sel, _ := json.Marshal(selector)
	p.mustEval(fmt.Sprintf(`document.querySelector(%s).select(), true`, sel), nil)
	p.do("Input.insertText", map[string]any{"text": text})
}

// clickAt presses and releases a mouse button at a point; count 2 is a
// double click. button is "left" or "right" (a right click opens the
// context menu).
func (p *page) clickAt(x, y float64, button string, count int) {
	p.t.Helper()
	buttons := 1
	if button == "right" {
		buttons = 2
	}
	p.mouse("mouseMoved", x, y, 0)
	for i := 1; i <= count; i++ {
		p.do("Input.dispatchMouseEvent", map[string]any{"type": "mousePressed", "x": x, "y": y, "button": button, "buttons": buttons, "clickCount": i})
		p.do("Input.dispatchMouseEvent", map[string]any{"type": "mouseReleased", "x": x, "y": y, "button": button, "buttons": 0, "clickCount": i})
	}
}

// rightClick opens the context menu over an element.
func (p *page) rightClick(selector string) {
	p.t.Helper()
	x, y := p.center(selector)
	p.clickAt(x, y, "right", 1)
}

// press, moveTo and release drag by hand, for checking what shows mid-drag.
func (p *page) press(x, y float64) {
	p.t.Helper()
	p.mouse("mouseMoved", x, y, 0)
	p.do("Input.dispatchMouseEvent", map[string]any{"type": "mousePressed", "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1})
}

func (p *page) moveTo(x0, y0, x1, y1 float64) {
	p.t.Helper()
	const steps = 12
	for i := 1; i <= steps; i++ {
		f := float64(i) / steps
		p.do("Input.dispatchMouseEvent", map[string]any{"type": "mouseMoved", "x": x0 + (x1-x0)*f, "y": y0 + (y1-y0)*f, "button": "left", "buttons": 1})
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *page) release(x, y float64) {
	p.t.Helper()
	p.do("Input.dispatchMouseEvent", map[string]any{"type": "mouseReleased", "x": x, "y": y, "button": "left", "buttons": 0, "clickCount": 1})
	p.settleTimers()
}
