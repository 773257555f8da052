// Pure helpers on the editor's graph: node factories, ids, snapshots for
// undo, placement without overlap, cycles, and reroute points.
import type { XYPosition } from "@xyflow/react";
import { edgeId, type FEdge, type FNode, type Graph, type Meta, type NodeData } from "./convert";
import { isImageUpload, type NodeSpec } from "./spec";

/** Node kinds besides workflow nodes ("face0"): editor-only, never run. */
export const virtualKinds = new Set(["note", "group", "reroute"]);

export function isWorkflowNode(n: FNode): boolean {
  return n.type === "face0";
}

/** withDefaults gives a node what its kind needs on the canvas. */
export function withDefaults(n: FNode): FNode {
  switch (n.type) {
    case "group":
      return { ...n, zIndex: -1, dragHandle: ".f0-frame-title", width: n.width ?? 400, height: n.height ?? 300 };
    case "note":
      return { ...n, dragHandle: ".f0-note-title", width: n.width ?? 240, height: n.height ?? 120 };
    default:
      return n;
  }
}

export function newId(stem: string, taken: Set<string>): string {
  const s = stem.toLowerCase().replace(/[^a-z0-9_]+/g, "_").slice(0, 40) || "node";
  for (let i = 1; ; i++) {
    const id = `${s}_${i}`;
    if (!taken.has(id)) return id;
  }
}

export type Snapshot = string;

type SnapNode = { id: string; t?: string; p: XYPosition; d: NodeData; w?: number; h?: number };

export function snapshot(nodes: FNode[], edges: FEdge[], meta: Meta): Snapshot {
  return JSON.stringify({
    n: nodes.map((n): SnapNode => {
      const s: SnapNode = { id: n.id, p: n.position, d: n.data };
      if (n.type !== "face0") s.t = n.type;
      if (n.width !== undefined) s.w = n.width;
      if (n.height !== undefined) s.h = n.height;
      return s;
    }),
    e: edges.map((e) => [e.source, e.sourceHandle, e.target, e.targetHandle]),
    m: meta,
  });
}

export function restore(s: Snapshot): Graph {
  const o = JSON.parse(s) as { n: SnapNode[]; e: string[][]; m: Meta };
  return {
    nodes: o.n.map((n) => withDefaults({ id: n.id, type: n.t || "face0", position: n.p, data: n.d, width: n.w, height: n.h })),
    edges: o.e.map(([s, sh, t, th]) => ({ id: edgeId(s, sh, t, th), source: s, sourceHandle: sh, target: t, targetHandle: th })),
    meta: o.m,
  };
}

export type Rect = { x: number; y: number; w: number; h: number };

/** estimateSize guesses a node's size before the browser has measured it. */
export function estimateSize(n: FNode, specs: Record<string, NodeSpec>): { w: number; h: number } {
  if (n.measured?.width && n.measured?.height) return { w: n.measured.width, h: n.measured.height };
  if (n.width && n.height) return { w: n.width, h: n.height };
  if (n.type === "reroute") return { w: 24, h: 24 };
  if (n.type === "note") return { w: n.width ?? 240, h: n.height ?? 120 };
  if (n.type === "group") return { w: n.width ?? 400, h: n.height ?? 300 };
  const spec = specs[n.data.nodeType];
  let rows = spec ? Math.max(spec.outputs.length, spec.inputs.filter((i) => !i.literal).length) : 4;
  for (const i of spec?.inputs || []) {
    if (!i.literal) continue;
    rows += isImageUpload(n.data.nodeType, i) ? 6 : i.schema["x-face0-multiline"] ? 4 : 1;
  }
  if (spec?.outputNode) rows += 8;
  return { w: n.width ?? 270, h: 40 + rows * 26 };
}

export function rectOf(n: FNode, specs: Record<string, NodeSpec>): Rect {
  const s = estimateSize(n, specs);
  return { x: n.position.x, y: n.position.y, w: s.w, h: s.h };
}

function overlaps(a: Rect, b: Rect, gap = 12): boolean {
  return a.x < b.x + b.w + gap && b.x < a.x + a.w + gap && a.y < b.y + b.h + gap && b.y < a.y + a.h + gap;
}

/** inside reports whether a lies within b. */
export function inside(a: Rect, b: Rect): boolean {
  return a.x >= b.x && a.y >= b.y && a.x + a.w <= b.x + b.w && a.y + a.h <= b.y + b.h;
}

/** freeOffset finds the smallest shift of the rectangles so that none of
 *  them overlaps an obstacle: tried on a widening grid around where they
 *  are, nearest first. Groups are containers, not obstacles. */
export function freeOffset(rects: Rect[], obstacles: Rect[]): XYPosition {
  const step = 24;
  const clear = (dx: number, dy: number) =>
    rects.every((r) => obstacles.every((o) => !overlaps({ ...r, x: r.x + dx, y: r.y + dy }, o)));
  if (clear(0, 0)) return { x: 0, y: 0 };
  const cands: XYPosition[] = [];
  for (let i = -40; i <= 40; i++) for (let j = -40; j <= 40; j++) cands.push({ x: i * step, y: j * step });
  // Nearest first; at equal distance, down and right before up and left.
  cands.sort((a, b) => Math.hypot(a.x, a.y * 1.3) - Math.hypot(b.x, b.y * 1.3) || b.y - a.y || b.x - a.x);
  for (const c of cands) if (clear(c.x, c.y)) return c;
  return { x: 0, y: 0 };
}

export function obstacles(nodes: FNode[], specs: Record<string, NodeSpec>, except?: Set<string>): Rect[] {
  return nodes.filter((n) => n.type !== "group" && !except?.has(n.id)).map((n) => rectOf(n, specs));
}

/** createsCycle reports whether a link source -> target closes a loop. */
export function createsCycle(edges: FEdge[], source: string, target: string): boolean {
  if (source === target) return true;
  const out = new Map<string, string[]>();
  for (const e of edges) {
    if (!out.has(e.source)) out.set(e.source, []);
    out.get(e.source)!.push(e.target);
  }
  const seen = new Set<string>();
  const stack = [target];
  while (stack.length) {
    const x = stack.pop()!;
    if (x === source) return true;
    if (seen.has(x)) continue;
    seen.add(x);
    stack.push(...(out.get(x) || []));
  }
  return false;
}

/** portType is a socket's type; a reroute's is what flows into it. */
export function portType(
  nodes: FNode[],
  edges: FEdge[],
  specs: Record<string, NodeSpec>,
  nodeId: string,
  handle: string | null | undefined,
  dir: "in" | "out",
): string {
  const n = nodes.find((x) => x.id === nodeId);
  if (!n) return "*";
  if (n.type === "reroute") {
    if (dir === "in") return "*";
    const src = upstream(nodes, edges, nodeId);
    return src ? portType(nodes, edges, specs, src.node, src.output, "out") : "*";
  }
  const spec = specs[n.data.nodeType];
  const comfy = n.data.ui?.comfy as { inputs?: { name: string; type: string }[]; outputs?: { name: string; type: string }[] } | undefined;
  if (dir === "out") return spec?.outputs.find((o) => o.name === handle)?.type || comfy?.outputs?.find((o) => o.name === handle)?.type || "*";
  return spec?.inputs.find((i) => i.name === handle)?.type || comfy?.inputs?.find((i) => i.name === handle)?.type || "*";
}

/** upstream follows reroutes back to the output that feeds a reroute. */
export function upstream(nodes: FNode[], edges: FEdge[], rerouteId: string): { node: string; output: string } | null {
  const seen = new Set<string>();
  let id = rerouteId;
  for (;;) {
    if (seen.has(id)) return null;
    seen.add(id);
    const e = edges.find((x) => x.target === id);
    if (!e) return null;
    const src = nodes.find((x) => x.id === e.source);
    if (!src) return null;
    if (src.type !== "reroute") return { node: e.source, output: e.sourceHandle || "" };
    id = src.id;
  }
}

/** downstream lists the workflow inputs a reroute feeds, through other reroutes. */
export function downstream(nodes: FNode[], edges: FEdge[], rerouteId: string): { node: string; input: string }[] {
  const out: { node: string; input: string }[] = [];
  const seen = new Set<string>();
  const stack = [rerouteId];
  while (stack.length) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    for (const e of edges) {
      if (e.source !== id) continue;
      const t = nodes.find((x) => x.id === e.target);
      if (t?.type === "reroute") stack.push(t.id);
      else if (t) out.push({ node: t.id, input: e.targetHandle || "" });
    }
  }
  return out;
}

/** downstreamOf lists every node that reads, directly or not, from ids. */
export function downstreamOf(edges: FEdge[], ids: Iterable<string>): Set<string> {
  const out = new Set<string>();
  const stack = [...ids];
  while (stack.length) {
    const id = stack.pop()!;
    for (const e of edges) {
      if (e.source === id && !out.has(e.target)) {
        out.add(e.target);
        stack.push(e.target);
      }
    }
  }
  return out;
}

/** Node colours, as ComfyUI's editor offers them (title bar, body). */
export const nodeColors: Record<string, { color: string; bgcolor: string }> = {
  red: { color: "#322", bgcolor: "#533" },
  brown: { color: "#332922", bgcolor: "#593930" },
  green: { color: "#232", bgcolor: "#353" },
  blue: { color: "#223", bgcolor: "#335" },
  pale_blue: { color: "#2a363b", bgcolor: "#3f5159" },
  cyan: { color: "#233", bgcolor: "#355" },
  purple: { color: "#323", bgcolor: "#535" },
  yellow: { color: "#432", bgcolor: "#653" },
  black: { color: "#222", bgcolor: "#000" },
};

/** hex6 turns #abc into #aabbcc, so that an alpha suffix can be added. */
export function hex6(c: string): string {
  return /^#[0-9a-fA-F]{3}$/.test(c) ? "#" + c.slice(1).split("").map((x) => x + x).join("") : c;
}
