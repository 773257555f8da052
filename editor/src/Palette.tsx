// The node palette: every node type from /object_info, grouped by category,
// with a search box. Click a node to add it in the middle of the view, or drag
// it onto the canvas.
import { useMemo, useState } from "react";
import type { NodeSpec } from "./spec";

export const dragMime = "application/x-face0-node";

type Props = {
  specs: Record<string, NodeSpec>;
  onAdd: (type: string) => void;
};

function matches(s: NodeSpec, q: string): boolean {
  if (!q) return true;
  const hay = `${s.type} ${s.displayName} ${s.category} ${s.description}`.toLowerCase();
  return q
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every((w) => hay.includes(w));
}

export function Palette({ specs, onAdd }: Props) {
  const [q, setQ] = useState("");
  const [closed, setClosed] = useState<Record<string, boolean>>({});
  const groups = useMemo(() => {
    const g = new Map<string, NodeSpec[]>();
    for (const s of Object.values(specs)) {
      if (!matches(s, q)) continue;
      if (!g.has(s.category)) g.set(s.category, []);
      g.get(s.category)!.push(s);
    }
    for (const l of g.values()) l.sort((a, b) => a.displayName.localeCompare(b.displayName));
    return [...g.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  }, [specs, q]);
  const count = groups.reduce((n, [, l]) => n + l.length, 0);
  return (
    <aside className="f0-palette">
      <input
        className="f0-search"
        type="search"
        placeholder="Search nodes…"
        value={q}
        onChange={(e) => setQ(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && count > 0) onAdd(groups[0][1][0].type);
        }}
      />
      <div className="f0-groups">
        {groups.map(([cat, list]) => {
          const isClosed = !q && closed[cat];
          return (
            <div className="f0-group" key={cat}>
              <div className="f0-cat" onClick={() => setClosed((c) => ({ ...c, [cat]: !c[cat] }))}>
                <span className="f0-caret">{isClosed ? "▸" : "▾"}</span> {cat}
              </div>
              {!isClosed &&
                list.map((s) => (
                  <div
                    key={s.type}
                    className="f0-item"
                    data-type={s.type}
                    title={s.description || s.type}
                    draggable
                    onDragStart={(e) => {
                      e.dataTransfer.setData(dragMime, s.type);
                      e.dataTransfer.effectAllowed = "copy";
                    }}
                    onClick={() => onAdd(s.type)}
                  >
                    {s.displayName}
                    {s.displayName !== s.type && <span className="f0-item-type">{s.type}</span>}
                  </div>
                ))}
            </div>
          );
        })}
        {count === 0 && <div className="f0-hint">No node matches “{q}”.</div>}
      </div>
    </aside>
  );
}
