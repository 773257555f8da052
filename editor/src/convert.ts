// Conversion between the editor's graph (React Flow nodes and edges) and the
// native workflow format (engine/workflow/schema.json). Positions and other
// editor state live in each node's "ui" object; converting a workflow in and
// out again gives the same workflow.
import type { Edge, Node } from "@xyflow/react";
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
  [k: string]: unknown;
};

export type FNode = Node<NodeData, "face0">;
export type FEdge = Edge;

export type NativeLink = { node: string; output: string | number };
export type NativeNode = {
  id: string;
  type: string;
  title?: string;
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

/** toNative writes the graph as a native workflow. */
export function toNative(g: Graph, specs: Record<string, NodeSpec>): Native {
  const links = new Map<string, NativeLink>();
  for (const e of g.edges) {
    links.set(e.target + "\u0000" + (e.targetHandle || ""), { node: e.source, output: e.sourceHandle || "" });
  }
  const nodes: NativeNode[] = g.nodes.map((n) => {
    const d = n.data;
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
    for (const k of names) {
      const l = links.get(n.id + "\u0000" + k);
      if (l) inputs[k] = { node: l.node, output: l.output };
      else if (d.values[k] !== undefined) inputs[k] = d.values[k];
    }
    const out: NativeNode = { id: n.id, type: d.nodeType };
    if (d.title) out.title = d.title;
    out.inputs = inputs;
    out.ui = { ...(d.ui || {}), position: { x: Math.round(n.position.x), y: Math.round(n.position.y) } };
    return out;
  });
  const wf = { version: 1 } as Native;
  if (g.meta.name) wf.name = g.meta.name;
  if (g.meta.description) wf.description = g.meta.description;
  wf.nodes = nodes;
  if (g.meta.ui && Object.keys(g.meta.ui).length) wf.ui = g.meta.ui;
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

/** parseWorkflow accepts a native workflow or a ComfyUI API prompt, as text or
 *  a parsed value, and returns a native workflow or throws a readable error. */
export function parseWorkflow(input: unknown, specs: Record<string, NodeSpec>): Native {
  let v = input;
  if (typeof v === "string") {
    try {
      v = JSON.parse(v);
    } catch (e) {
      throw new Error("not JSON: " + (e as Error).message);
    }
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not a workflow: expected a JSON object");
  const o = v as Record<string, unknown>;
  if (Array.isArray(o.nodes) && "version" in o) {
    if (o.version !== 1) throw new Error(`workflow version ${String(o.version)} is not supported (this editor reads version 1)`);
    for (const n of o.nodes as unknown[]) {
      const nn = n as NativeNode;
      if (!nn || typeof nn.id !== "string" || typeof nn.type !== "string") {
        throw new Error("not a workflow: every node needs a string id and type");
      }
    }
    return o as unknown as Native;
  }
  if ("last_node_id" in o || ("nodes" in o && "links" in o)) {
    throw new Error('this is a ComfyUI editor workflow; export it with "Save (API Format)" and load that');
  }
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
  throw new Error('not a workflow: expected a face0 workflow ({"version": 1, "nodes": [...]}) or a ComfyUI API prompt');
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
  for (const n of wf.nodes) {
    const spec = specs[n.type];
    const values: Record<string, unknown> = {};
    const extraInputs: string[] = [];
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
        edges.push({ id: edgeId(val.node, out, n.id, k), source: val.node, sourceHandle: out, target: n.id, targetHandle: k });
      } else {
        values[k] = val;
      }
    }
    const ui = { ...(n.ui || {}) };
    const pos = readPosition(ui);
    delete ui.position;
    delete ui.pos;
    const data: NodeData = { nodeType: n.type, values };
    if (n.title) data.title = n.title;
    if (extraInputs.length) data.extraInputs = extraInputs;
    if (Object.keys(ui).length) data.ui = ui;
    const node: FNode = { id: n.id, type: "face0", position: pos || { x: 0, y: 0 }, data };
    if (!pos) needLayout.push(node);
    nodes.push(node);
  }
  for (const node of nodes) {
    const outs = extraOut.get(node.id);
    if (outs) node.data.extraOutputs = [...outs];
  }
  // Drop links to nodes that are not there; the engine would refuse them anyway.
  const ids = new Set(nodes.map((n) => n.id));
  const kept = edges.filter((e) => ids.has(e.source));
  if (needLayout.length) layout(needLayout, nodes, kept, specs);
  const meta: Meta = {};
  if (wf.name) meta.name = wf.name;
  if (wf.description) meta.description = wf.description;
  if (wf.ui && typeof wf.ui === "object") meta.ui = { ...wf.ui };
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
  for (const n of all) if (!placed.has(n.id)) top = Math.max(top, n.position.y + 300);
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
