package synthfaces

import "strings"

var stylePhrases = map[string]string{
	StylePhoto:   "a photo portrait",
	StyleCartoon: "a flat cartoon portrait",
	StyleSketch:  "a pencil sketch",
	StylePopArt:  "a pop-art portrait",
}

var exprWords = map[string]string{
	"neutral": "serious",
	"smile":   "smiling",
	"open":    "open-mouthed",
}

// Caption returns the natural-language caption of a scene. It names every
// scene attribute and nothing about the identity:
//
//	<style> of a <expression> person wearing <items>, on a <background> background
//
// style: "a photo portrait" | "a flat cartoon portrait" | "a pencil sketch" | "a pop-art portrait"
// expression: "serious" | "smiling" | "open-mouthed"
// items, in this order, joined by ", " and a final " and ":
// "a [colour ]cap|beanie|top hat" (when a hat is worn), "round glasses" |
// "square glasses" | "sunglasses" (when glasses are worn), "a [colour ]shirt"
// (always). Colours are omitted in the sketch style.
func Caption(s Scene) string {
	var items []string
	if s.Hat != "none" && s.Hat != "" {
		items = append(items, article(withColor(s.HatColor, s.Hat)))
	}
	switch s.Glasses {
	case "round", "square":
		items = append(items, s.Glasses+" glasses")
	case "sunglasses":
		items = append(items, "sunglasses")
	}
	items = append(items, article(withColor(s.ClothingColor, "shirt")))
	return stylePhrases[s.Style] + " of " + article(exprWords[s.Expression]) + " person wearing " + joinAnd(items) + ", on " + article(s.Background) + " background"
}

// article prefixes "a " or "an " to a word.
func article(w string) string {
	if w != "" && strings.ContainsRune("aeiou", rune(w[0])) {
		return "an " + w
	}
	return "a " + w
}

func withColor(c, thing string) string {
	if c == "" {
		return thing
	}
	return c + " " + thing
}

func joinAnd(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// ParseCaption inverts Caption. ok is false when the text does not follow the
// caption grammar.
func ParseCaption(text string) (s Scene, ok bool) {
	rest := text
	for st, ph := range stylePhrases {
		if r, ok := strings.CutPrefix(rest, ph+" of "); ok {
			s.Style = st
			rest = r
			break
		}
	}
	if s.Style == "" {
		return s, false
	}
	for e, w := range exprWords {
		if r, ok := strings.CutPrefix(rest, article(w)+" person wearing "); ok {
			s.Expression = e
			rest = r
			break
		}
	}
	if s.Expression == "" {
		return s, false
	}
	i := strings.LastIndex(rest, ", on ")
	if i < 0 || !strings.HasSuffix(rest, " background") {
		return s, false
	}
	bg := strings.TrimSuffix(rest[i+len(", on "):], " background")
	_, bg, _ = strings.Cut(bg, " ")
	if _, ok := lookup(BackgroundColors, bg); !ok || article(bg)+" background" != rest[i+len(", on "):] {
		return s, false
	}
	s.Background = bg
	list := rest[:i]
	var items []string
	if j := strings.LastIndex(list, " and "); j >= 0 {
		items = append(strings.Split(list[:j], ", "), list[j+5:])
	} else {
		items = []string{list}
	}
	s.Hat, s.Glasses = "none", "none"
	colorOf := func(phrase, thing string) (string, bool) {
		if phrase == article(thing) {
			return "", true
		}
		for _, c := range ItemColors {
			if phrase == article(c.Name+" "+thing) {
				return c.Name, true
			}
		}
		return "", false
	}
	for _, it := range items {
		switch {
		case it == "round glasses" || it == "square glasses":
			s.Glasses = strings.TrimSuffix(it, " glasses")
		case it == "sunglasses":
			s.Glasses = it
		case strings.HasSuffix(it, "shirt"):
			c, ok := colorOf(it, "shirt")
			if !ok {
				return s, false
			}
			s.ClothingColor = c
		default:
			found := false
			for _, h := range Hats[1:] {
				if c, ok := colorOf(it, h); ok {
					s.Hat, s.HatColor, found = h, c, true
					break
				}
			}
			if !found {
				return s, false
			}
		}
	}
	return s, true
}
