// Pop-ups over the canvas: the node search (double-click on the canvas, or
// a link dropped on it), the right-click menu, and the confirmation dialog.
import { type Connection, useConnection } from "@xyflow/react";
import { useEffect, useMemo, useRef, useState } from "react";
import { assignable, type NodeSpec } from "./spec";

/** A link being dragged when the search opened: the new node is wired to it. */
export type SearchFilter = { type: string; dir: "from-output" | "from-input" };

type SearchProps = {
  x: number;
  y: number;
  specs: Record<string, NodeSpec>;
  filter?: SearchFilter;
  onPick: (type: string) => void;
  onClose: () => void;
};

/** fits tells whether a node type can take (or give) a link of the filter's type. */
export function fits(s: NodeSpec, f?: SearchFilter): boolean {
  if (!f) return true;
  if (f.dir === "from-output") return s.inputs.some((i) => assignable(f.type, i.type)[0]);
  return s.outputs.some((o) => assignable(o.type, f.type)[0]);
}

function score(s: NodeSpec, q: string): number {
  if (!q) return 1;
  const name = s.displayName.toLowerCase();
  const type = s.type.toLowerCase();
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  const hay = `${type} ${name} ${s.category} ${s.description}`.toLowerCase();
  if (!words.every((w) => hay.includes(w))) return 0;
  const q0 = words.join(" ");
  if (name === q0 || type === q0) return 100;
  if (name.startsWith(q0) || type.startsWith(q0)) return 50;
  if (name.includes(q0) || type.includes(q0)) return 20;
  return 5;
}

export function NodeSearch({ x, y, specs, filter, onPick, onClose }: SearchProps) {
  const [q, setQ] = useState("");
  const [sel, setSel] = useState(0);
  const list = useMemo(
    () =>
      Object.values(specs)
        .filter((s) => fits(s, filter))
        .map((s) => [score(s, q), s] as const)
        .filter(([n]) => n > 0)
        .sort((a, b) => b[0] - a[0] || a[1].displayName.localeCompare(b[1].displayName))
        .slice(0, 40)
        .map(([, s]) => s),
    [specs, q, filter],
  );
  useEffect(() => setSel(0), [q]);
  const left = Math.min(x, window.innerWidth - 330);
  const top = Math.min(y, window.innerHeight - 360);
  return (
    <div className="f0-popup f0-nodesearch" style={{ left, top }} onMouseDown={(e) => e.stopPropagation()}>
      <input
        autoFocus
        className="f0-search"
        placeholder={filter ? `Search nodes that ${filter.dir === "from-output" ? "take" : "give"} ${filter.type}…` : "Search nodes…"}
        value={q}
        onChange={(e) => setQ(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Escape") onClose();
          else if (e.key === "ArrowDown") {
            e.preventDefault();
            setSel((i) => Math.min(i + 1, list.length - 1));
          } else if (e.key === "ArrowUp") {
            e.preventDefault();
            setSel((i) => Math.max(i - 1, 0));
          } else if (e.key === "Enter" && list[sel]) onPick(list[sel].type);
        }}
      />
      <div className="f0-nodesearch-list">
        {list.map((s, i) => (
          <div
            key={s.type}
            className={"f0-nodesearch-item" + (i === sel ? " active" : "")}
            data-type={s.type}
            onMouseEnter={() => setSel(i)}
            onClick={() => onPick(s.type)}
          >
            <span>{s.displayName}</span>
            <span className="f0-item-type">{s.category}</span>
          </div>
        ))}
        {!list.length && <div className="f0-hint">No node {filter ? `fits a ${filter.type} link` : "matches"}.</div>}
      </div>
    </div>
  );
}

export type MenuItem =
  | { label: string; hint?: string; onClick: () => void; disabled?: boolean; id?: string }
  | { label: string; items: MenuItem[]; id?: string }
  | "-";

export function ContextMenu({ x, y, items, onClose }: { x: number; y: number; items: MenuItem[]; onClose: () => void }) {
  const ref = useRef<HTMLDivElement>(null);
  const [open, setOpen] = useState<string | null>(null);
  useEffect(() => {
    const down = (e: MouseEvent) => {
      if (ref.current && !ref.current.contains(e.target as Node)) onClose();
    };
    const key = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    window.addEventListener("mousedown", down, true);
    window.addEventListener("keydown", key);
    return () => {
      window.removeEventListener("mousedown", down, true);
      window.removeEventListener("keydown", key);
    };
  }, [onClose]);
  const left = Math.min(x, window.innerWidth - 220);
  const top = Math.min(y, window.innerHeight - items.length * 28 - 10);
  return (
    <div className="f0-popup f0-menu" ref={ref} style={{ left, top }} onContextMenu={(e) => e.preventDefault()}>
      {items.map((it, i) =>
        it === "-" ? (
          <div key={i} className="f0-menu-sep" />
        ) : "items" in it ? (
          <div key={i} className="f0-menu-item sub" data-menu={it.id} onMouseEnter={() => setOpen(it.label)}>
            {it.label} <span className="f0-menu-hint">▸</span>
            {open === it.label && (
              <div className="f0-popup f0-menu f0-submenu">
                {it.items.map((s, j) =>
                  s === "-" || "items" in s ? null : (
                    <div
                      key={j}
                      className="f0-menu-item"
                      data-menu={s.id}
                      onClick={() => {
                        s.onClick();
                        onClose();
                      }}
                    >
                      {s.label}
                    </div>
                  ),
                )}
              </div>
            )}
          </div>
        ) : (
          <div
            key={i}
            className={"f0-menu-item" + (it.disabled ? " disabled" : "")}
            data-menu={it.id}
            onMouseEnter={() => setOpen(null)}
            onClick={() => {
              if (it.disabled) return;
              it.onClick();
              onClose();
            }}
          >
            {it.label}
            {it.hint && <span className="f0-menu-hint">{it.hint}</span>}
          </div>
        ),
      )}
    </div>
  );
}

/** Confirm asks before something is thrown away. */
export function Confirm({ text, yes, onAnswer }: { text: string; yes: string; onAnswer: (ok: boolean) => void }) {
  useEffect(() => {
    const key = (e: KeyboardEvent) => {
      if (e.key === "Escape") onAnswer(false);
    };
    window.addEventListener("keydown", key);
    return () => window.removeEventListener("keydown", key);
  }, [onAnswer]);
  return (
    <div className="f0-modal" onMouseDown={() => onAnswer(false)}>
      <div className="f0-dialog" role="dialog" onMouseDown={(e) => e.stopPropagation()}>
        <p>{text}</p>
        <div className="f0-dialog-buttons">
          <button id="confirm-cancel" onClick={() => onAnswer(false)}>
            Cancel
          </button>
          <button id="confirm-yes" className="primary danger" autoFocus onClick={() => onAnswer(true)}>
            {yes}
          </button>
        </div>
      </div>
    </div>
  );
}

/** ConnectionHint says, while a link is dragged over an input that refuses
 *  it, why. */
export function ConnectionHint({ why }: { why: (c: Connection) => string }) {
  const c = useConnection();
  if (!c.inProgress || !c.toHandle || c.isValid !== false) return null;
  const from = c.fromHandle.type === "source" ? c.fromHandle : c.toHandle;
  const to = c.fromHandle.type === "source" ? c.toHandle : c.fromHandle;
  const text = why({ source: from.nodeId, sourceHandle: from.id ?? null, target: to.nodeId, targetHandle: to.id ?? null });
  if (!text) return null;
  return (
    <div className="f0-link-hint" style={{ transform: `translate(${c.pointer.x + 14}px, ${c.pointer.y + 14}px)` }}>
      {text}
    </div>
  );
}
