// Conversion between the editor's graph (React Flow nodes and edges) and the
// native workflow format (engine/workflow/schema.json). Positions and other
// editor state live in each node's "ui" object; converting a workflow in and
// out again gives the same workflow.
import type { Edge, Node } from "@xyflow/react";
import { fromLitegraph, isLitegraph, type Report } from "./litegraph";
import { isImageUpload, type NodeSpec } from "./spec";

export type NodeData = {
  nodeType: string;
  title?: string;
  /** literal input values as the workflow gives them (a missing one means the
   *  schema's default); kept while the input is linked */
  values: Record<string, unknown>;
  /** names of the inputs given in the workflow, when unknown to the specs */
  extraInputs?: string[];
  /** outputs referenced by links, when unknown to the specs */
  extraOutputs?: string[];
  /** the node's "ui" object, less position */
  ui?: Record<string, unknown>;
  /** muted or bypassed: the engine does not run it */
  mode?: "muted" | "bypassed";
  /** a note's text, a group's title (editor-only nodes) */
  text?: string;
  [k: string]: unknown;
};

/** A node on the canvas. type "face0" is a workflow node; "note", "group"
 *  and "reroute" are editor-only and live in the workflow's ui. */
export type FNode = Node<NodeData>;
export type FEdge = Edge;

export type NativeLink = { node: string; output: string | number };
export type NativeNode = {
  id: string;
  type: string;
  title?: string;
  mode?: "muted" | "bypassed";
  inputs?: Record<string, unknown>;
  ui?: Record<string, unknown>;
};
export type Native = {
  version: 1;
  name?: string;
  description?: string;
  nodes: NativeNode[];
  ui?: Record<string, unknown>;
};

export type Meta = { name?: string; description?: string; ui?: Record<string, unknown> };

export type Graph = { nodes: FNode[]; edges: FEdge[]; meta: Meta };

export function isLink(v: unknown): v is NativeLink {
  return (
    !!v &&
    typeof v === "object" &&
    !Array.isArray(v) &&
    typeof (v as NativeLink).node === "string" &&
    (typeof (v as NativeLink).output === "string" || typeof (v as NativeLink).output === "number")
  );
}

export function edgeId(source: string, output: string, target: string, input: string): string {
  return `${source}:${output}->${target}:${input}`;
}

/** Editor-only nodes as the workflow's ui keeps them. */
type UINote = { id: string; position: { x: number; y: number }; size?: [number, number]; text: string; color?: string; bgcolor?: string };
type UIGroup = { id: string; position: { x: number; y: number }; size: [number, number]; title: string; color?: string };
type UIReroute = { id: string; position: { x: number; y: number }; from?: { node: string; output: string } };

const xy = (p: { x: number; y: number }) => ({ x: Math.round(p.x), y: Math.round(p.y) });

/** toNative writes the graph as a native workflow. Notes, groups and
 *  reroute points go into the workflow's ui; a link drawn through reroute
 *  points is a plain link from the real output, with the reroute it ends at
 *  named in the target node's ui.via. */
export function toNative(g: Graph, specs: Record<string, NodeSpec>): Native {
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  const into = new Map<string, FEdge>();
  for (const e of g.edges) into.set(e.target + "\u0000" + (e.targetHandle || ""), e);
  // real follows reroutes up to the output that feeds them.
  const real = (e: FEdge): NativeLink | null => {
    const seen = new Set<string>();
    let cur: FEdge | undefined = e;
    while (cur) {
      const src = byId.get(cur.source);
      if (!src) return null;
      if (src.type !== "reroute") return { node: cur.source, output: cur.sourceHandle || "" };
      if (seen.has(src.id)) return null;
      seen.add(src.id);
      cur = into.get(src.id + "\u0000in");
    }
    return null;
  };
  const notes: UINote[] = [];
  const groups: UIGroup[] = [];
  const reroutes: UIReroute[] = [];
  const nodes: NativeNode[] = [];
  for (const n of g.nodes) {
    const d = n.data;
    if (n.type === "note") {
      const note: UINote = { id: n.id, position: xy(n.position), text: d.text || "" };
      if (n.width && n.height) note.size = [Math.round(n.width), Math.round(n.height)];
      if (d.ui?.color) note.color = d.ui.color as string;
      if (d.ui?.bgcolor) note.bgcolor = d.ui.bgcolor as string;
      notes.push(note);
      continue;
    }
    if (n.type === "group") {
      const grp: UIGroup = { id: n.id, position: xy(n.position), size: [Math.round(n.width ?? 400), Math.round(n.height ?? 300)], title: d.text || "" };
      if (d.ui?.color) grp.color = d.ui.color as string;
      groups.push(grp);
      continue;
    }
    if (n.type === "reroute") {
      const r: UIReroute = { id: n.id, position: xy(n.position) };
      const e = into.get(n.id + "\u0000in");
      if (e && byId.has(e.source)) r.from = { node: e.source, output: e.sourceHandle || "" };
      reroutes.push(r);
      continue;
    }
    const spec = specs[d.nodeType];
    const names: string[] = [];
    const seen = new Set<string>();
    const push = (k: string) => {
      if (!seen.has(k)) {
        seen.add(k);
        names.push(k);
      }
    };
    spec?.inputs.forEach((i) => push(i.name));
    Object.keys(d.values).forEach(push);
    (d.extraInputs || []).forEach(push);
    const inputs: Record<string, unknown> = {};
    const via: Record<string, string> = {};
    for (const k of names) {
      const e = into.get(n.id + "\u0000" + k);
      const l = e && real(e);
      if (e && l) {
        inputs[k] = { node: l.node, output: l.output };
        if (e.source !== l.node) via[k] = e.source;
      } else if (d.values[k] !== undefined) inputs[k] = d.values[k];
    }
    const out: NativeNode = { id: n.id, type: d.nodeType };
    if (d.title) out.title = d.title;
    if (d.mode) out.mode = d.mode;
    out.inputs = inputs;
    const ui: Record<string, unknown> = { ...(d.ui || {}), position: xy(n.position) };
    if (n.width !== undefined) ui.size = [Math.round(n.width), Math.round(n.height ?? 0)];
    else delete ui.size;
    if (Object.keys(via).length) ui.via = via;
    out.ui = ui;
    nodes.push(out);
  }
  const wf = { version: 1 } as Native;
  if (g.meta.name) wf.name = g.meta.name;
  if (g.meta.description) wf.description = g.meta.description;
  wf.nodes = nodes;
  const ui: Record<string, unknown> = { ...(g.meta.ui || {}) };
  delete ui.notes;
  delete ui.groups;
  delete ui.reroutes;
  if (notes.length) ui.notes = notes;
  if (groups.length) ui.groups = groups;
  if (reroutes.length) ui.reroutes = reroutes;
  if (Object.keys(ui).length) wf.ui = ui;
  return wf;
}

function readPosition(ui: Record<string, unknown> | undefined): { x: number; y: number } | null {
  if (!ui) return null;
  const p = ui.position ?? ui.pos;
  if (Array.isArray(p) && p.length >= 2 && typeof p[0] === "number" && typeof p[1] === "number") {
    return { x: p[0], y: p[1] };
  }
  if (p && typeof p === "object" && typeof (p as { x?: unknown }).x === "number" && typeof (p as { y?: unknown }).y === "number") {
    return { x: (p as { x: number }).x, y: (p as { y: number }).y };
  }
  return null;
}

/** parseWorkflow accepts a native workflow, a ComfyUI editor workflow or a
 *  ComfyUI API prompt, as text or a parsed value, and returns a native
 *  workflow or throws a readable error. */
export function parseWorkflow(input: unknown, specs: Record<string, NodeSpec>): Native {
  return readWorkflow(input, specs).wf;
}

/** readWorkflow is parseWorkflow, also saying what a ComfyUI editor file
 *  held that has no place here. */
export function readWorkflow(input: unknown, specs: Record<string, NodeSpec>): { wf: Native; report?: Report; format: string } {
  let v = input;
  if (typeof v === "string") {
    if (v.charCodeAt(0) === 0xfeff) v = v.slice(1); // a byte-order mark
    try {
      v = JSON.parse(v as string);
    } catch (e) {
      throw new Error("not JSON: " + (e as Error).message);
    }
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not a workflow: expected a JSON object");
  const o = v as Record<string, unknown>;
  if (isLitegraph(o)) {
    const { wf, report } = fromLitegraph(o, specs);
    return { wf, report, format: "ComfyUI editor" };
  }
  if (Array.isArray(o.nodes) && "version" in o) {
    if (o.version !== 1) throw new Error(`workflow version ${String(o.version)} is not supported (this editor reads version 1)`);
    for (const n of o.nodes as unknown[]) {
      const nn = n as NativeNode;
      if (!nn || typeof nn.id !== "string" || typeof nn.type !== "string") {
        throw new Error("not a workflow: every node needs a string id and type");
      }
    }
    return { wf: o as unknown as Native, format: "face0" };
  }
  return { wf: fromAPIPrompt(o, specs), format: "ComfyUI API" };
}

function fromAPIPrompt(o: Record<string, unknown>, specs: Record<string, NodeSpec>): Native {
  // ComfyUI API prompt: {"id": {"class_type": ..., "inputs": {...}}}
  const entries = Object.entries(o);
  if (entries.length && entries.every(([, n]) => n && typeof n === "object" && typeof (n as { class_type?: unknown }).class_type === "string")) {
    const nodes: NativeNode[] = entries.map(([id, n]) => {
      const c = n as { class_type: string; inputs?: Record<string, unknown>; _meta?: { title?: string } };
      const inputs: Record<string, unknown> = {};
      for (const [k, val] of Object.entries(c.inputs || {})) {
        if (Array.isArray(val) && val.length === 2 && (typeof val[0] === "string" || typeof val[0] === "number") && typeof val[1] === "number") {
          const src = String(val[0]);
          const srcType = (o[src] as { class_type?: string } | undefined)?.class_type;
          const name = srcType && specs[srcType]?.outputs[val[1]]?.name;
          inputs[k] = { node: src, output: name || val[1] };
        } else {
          inputs[k] = val;
        }
      }
      const nn: NativeNode = { id: String(id).replace(/[^A-Za-z0-9_.:-]/g, "_"), type: c.class_type, inputs };
      if (c._meta?.title) nn.title = c._meta.title;
      return nn;
    });
    return { version: 1, nodes };
  }
  throw new Error('not a workflow: expected a face0 workflow ({"version": 1, "nodes": [...]}), a ComfyUI workflow or a ComfyUI API prompt');
}

/** fromNative reads a native workflow into the editor's graph; nodes without
 *  a position are laid out left to right by depth. */
export function fromNative(wf: Native, specs: Record<string, NodeSpec>): Graph {
  const byId = new Map<string, NativeNode>();
  wf.nodes.forEach((n) => byId.set(n.id, n));
  const nodes: FNode[] = [];
  const edges: FEdge[] = [];
  const needLayout: FNode[] = [];
  const extraOut = new Map<string, Set<string>>();
  const wui = (wf.ui && typeof wf.ui === "object" ? wf.ui : {}) as Record<string, unknown>;
  const list = <T>(k: string): T[] => (Array.isArray(wui[k]) ? (wui[k] as T[]) : []);
  const reroutes = new Map<string, UIReroute>();
  for (const r of list<UIReroute>("reroutes")) if (r && typeof r.id === "string" && !byId.has(r.id)) reroutes.set(r.id, r);
  // rerouteSource follows reroute points back to the output feeding them.
  const rerouteSource = (id: string): { node: string; output: string } | null => {
    const seen = new Set<string>();
    let r = reroutes.get(id);
    while (r && r.from) {
      if (seen.has(r.id)) return null;
      seen.add(r.id);
      if (!reroutes.has(r.from.node)) return r.from;
      r = reroutes.get(r.from.node);
    }
    return null;
  };
  for (const n of wf.nodes) {
    const spec = specs[n.type];
    const values: Record<string, unknown> = {};
    const extraInputs: string[] = [];
    const via = ((n.ui || {}) as { via?: Record<string, string> }).via || {};
    for (const [k, val] of Object.entries(n.inputs || {})) {
      const known = spec?.inputs.some((i) => i.name === k);
      if (!known) extraInputs.push(k);
      if (isLink(val)) {
        let out = val.output;
        if (typeof out === "number") {
          const srcSpec = specs[byId.get(val.node)?.type || ""];
          out = srcSpec?.outputs[out]?.name ?? String(out);
        }
        const srcSpec = specs[byId.get(val.node)?.type || ""];
        if (!srcSpec || !srcSpec.outputs.some((o) => o.name === out)) {
          if (!extraOut.has(val.node)) extraOut.set(val.node, new Set());
          extraOut.get(val.node)!.add(out);
        }
        // Drawn through its reroute point when that point leads to this output.
        const r = via[k];
        const rs = r && rerouteSource(r);
        if (rs && rs.node === val.node && rs.output === out) {
          edges.push({ id: edgeId(r, "out", n.id, k), source: r, sourceHandle: "out", target: n.id, targetHandle: k });
        } else {
          edges.push({ id: edgeId(val.node, out, n.id, k), source: val.node, sourceHandle: out, target: n.id, targetHandle: k });
        }
      } else {
        values[k] = val;
      }
    }
    const ui = { ...(n.ui || {}) };
    const pos = readPosition(ui);
    delete ui.position;
    delete ui.pos;
    delete ui.via;
    const size = Array.isArray(ui.size) && typeof ui.size[0] === "number" ? (ui.size as number[]) : null;
    delete ui.size;
    const data: NodeData = { nodeType: n.type, values };
    if (n.title) data.title = n.title;
    if (n.mode === "muted" || n.mode === "bypassed") data.mode = n.mode;
    if (extraInputs.length) data.extraInputs = extraInputs;
    if (Object.keys(ui).length) data.ui = ui;
    const node: FNode = { id: n.id, type: "face0", position: pos || { x: 0, y: 0 }, data };
    if (size && size[0] > 0) node.width = size[0];
    if (!pos) needLayout.push(node);
    nodes.push(node);
  }
  for (const node of nodes) {
    const outs = extraOut.get(node.id);
    if (outs) node.data.extraOutputs = [...outs];
  }
  // Editor-only nodes.
  for (const r of reroutes.values()) {
    nodes.push({ id: r.id, type: "reroute", position: readPosition(r as unknown as Record<string, unknown>) || { x: 0, y: 0 }, data: { nodeType: "", values: {} } });
    if (r.from && (byId.has(r.from.node) || reroutes.has(r.from.node))) {
      const out = reroutes.has(r.from.node) ? "out" : r.from.output;
      edges.push({ id: edgeId(r.from.node, out, r.id, "in"), source: r.from.node, sourceHandle: out, target: r.id, targetHandle: "in" });
    }
  }
  const taken = new Set(nodes.map((n) => n.id));
  for (const note of list<UINote>("notes")) {
    if (!note || typeof note.id !== "string" || taken.has(note.id)) continue;
    taken.add(note.id);
    const ui: Record<string, unknown> = {};
    if (note.color) ui.color = note.color;
    if (note.bgcolor) ui.bgcolor = note.bgcolor;
    const nn: FNode = { id: note.id, type: "note", position: readPosition(note as unknown as Record<string, unknown>) || { x: 0, y: 0 }, data: { nodeType: "", values: {}, text: String(note.text ?? "") } };
    if (Object.keys(ui).length) nn.data.ui = ui;
    if (Array.isArray(note.size)) {
      nn.width = note.size[0];
      nn.height = note.size[1];
    }
    nodes.push(nn);
  }
  for (const grp of list<UIGroup>("groups")) {
    if (!grp || typeof grp.id !== "string" || taken.has(grp.id)) continue;
    taken.add(grp.id);
    const size = Array.isArray(grp.size) ? grp.size : [400, 300];
    const gn: FNode = { id: grp.id, type: "group", position: readPosition(grp as unknown as Record<string, unknown>) || { x: 0, y: 0 }, data: { nodeType: "", values: {}, text: String(grp.title ?? "") }, width: size[0], height: size[1] };
    if (grp.color) gn.data.ui = { color: grp.color };
    // Groups first, so that they are drawn below the nodes they hold.
    nodes.unshift(gn);
  }
  // Drop links to nodes that are not there; the engine would refuse them anyway.
  const ids = new Set(nodes.map((n) => n.id));
  const kept = edges.filter((e) => ids.has(e.source));
  if (needLayout.length) layout(needLayout, nodes, kept, specs);
  const meta: Meta = {};
  if (wf.name) meta.name = wf.name;
  if (wf.description) meta.description = wf.description;
  if (wf.ui && typeof wf.ui === "object") {
    const rest = { ...wf.ui };
    delete rest.notes;
    delete rest.groups;
    delete rest.reroutes;
    if (Object.keys(rest).length) meta.ui = rest;
  }
  return { nodes, edges: kept, meta };
}

function layout(todo: FNode[], all: FNode[], edges: FEdge[], specs: Record<string, NodeSpec>) {
  const depth = new Map<string, number>();
  const parents = new Map<string, string[]>();
  for (const e of edges) {
    if (!parents.has(e.target)) parents.set(e.target, []);
    parents.get(e.target)!.push(e.source);
  }
  const visiting = new Set<string>();
  const d = (id: string): number => {
    if (depth.has(id)) return depth.get(id)!;
    if (visiting.has(id)) return 0; // a cycle; the engine reports it
    visiting.add(id);
    let m = 0;
    for (const p of parents.get(id) || []) m = Math.max(m, d(p) + 1);
    visiting.delete(id);
    depth.set(id, m);
    return m;
  };
  const colY = new Map<number, number>();
  const placed = new Set(todo.map((n) => n.id));
  // Start new columns below nodes that already have positions.
  let top = 0;
  for (const n of all) if (!placed.has(n.id) && n.type === "face0") top = Math.max(top, n.position.y + 300);
  for (const n of todo) {
    const c = d(n.id);
    const y = colY.get(c) ?? top;
    n.position = { x: 40 + c * 320, y };
    const spec = specs[n.data.nodeType];
    let rows = spec ? Math.max(spec.outputs.length, spec.inputs.filter((i) => !i.literal).length) : 4;
    for (const i of spec?.inputs || []) {
      if (!i.literal) continue;
      rows += isImageUpload(n.data.nodeType, i) ? 6 : i.schema["x-face0-multiline"] ? 4 : 1;
    }
    if (spec?.outputNode) rows += 8;
    colY.set(c, y + 80 + rows * 30);
  }
}
