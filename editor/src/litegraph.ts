// Workflows saved by ComfyUI's own editor (litegraph's serialisation, schema
// version 0.4 with links as arrays, and the newer version 1 with links as
// objects and reroutes), read into the native format.
//
// A node's widget values are a list in widget order; they map to inputs
// through /object_info's input order: each widget input (INT, FLOAT, STRING,
// BOOLEAN, a list of choices) takes the next value, a seed's "control after
// generate" widget takes the value after it, and an image_upload input may be
// followed by the upload button's value in older files. Links become native
// links by input and output name. Frontend-only nodes become what the face0
// editor has: Note and MarkdownNote become notes, Reroute nodes and link
// reroutes become reroute points, groups stay groups, a PrimitiveNode is
// dropped (its value is already in the widgets it drives). Node types this
// server lacks stay, marked missing, with their sockets and values; a
// subgraph's node (its type is the subgraph's id) is named by the subgraph,
// which this editor does not open.
import type { Native, NativeNode } from "./convert";
import { baseType, type InputSpec, isImageUpload, isSeed, type NodeSpec } from "./spec";

type Vec = [number, number] | { 0: number; 1: number };
type LSlot = { name: string; type?: unknown; link?: number | null; links?: number[] | null; widget?: { name?: string }; label?: string };
type LNode = {
  id: number | string;
  type: string;
  title?: string;
  pos?: Vec;
  size?: Vec;
  flags?: { collapsed?: boolean };
  mode?: number;
  inputs?: LSlot[];
  outputs?: LSlot[];
  widgets_values?: unknown[] | Record<string, unknown>;
  color?: string;
  bgcolor?: string;
  properties?: Record<string, unknown>;
};
type LLink = { id: number; origin_id: number | string; origin_slot: number; target_id: number | string; target_slot: number; parentId?: number };
type LReroute = { id: number; parentId?: number; pos: Vec };
type LGroup = { title?: string; bounding?: number[]; color?: string };

export type LitegraphFile = Record<string, unknown> & { nodes: LNode[] };

/** isLitegraph tells ComfyUI editor files from native workflows, which share
 *  "version": 1 and "nodes" with the newer schema. */
export function isLitegraph(o: Record<string, unknown>): o is LitegraphFile {
  if (!Array.isArray(o.nodes)) return false;
  if ("last_node_id" in o || "last_link_id" in o || ("state" in o && typeof o.state === "object")) return true;
  return (o.nodes as unknown[]).some((n) => {
    const x = n as Record<string, unknown> | null;
    return !!x && (typeof x.id === "number" || Array.isArray(x.inputs) || "widgets_values" in x || Array.isArray(x.pos));
  });
}

const controlValues = new Set(["fixed", "increment", "decrement", "randomize"]);
const typeRE = /^[A-Za-z_][A-Za-z0-9_.:/ +-]{0,127}$/;

function vec(v: Vec | undefined): [number, number] | null {
  if (!v) return null;
  const a = Number((v as { 0: number })[0]);
  const b = Number((v as { 1: number })[1]);
  return Number.isFinite(a) && Number.isFinite(b) ? [a, b] : null;
}

const nodeId = (id: number | string) => String(id).replace(/[^A-Za-z0-9_.:-]/g, "_");

/** widgetInputs are the inputs ComfyUI's editor shows as widgets, in order. */
export function widgetInputs(spec: NodeSpec): InputSpec[] {
  return spec.inputs.filter((i) => i.literal);
}

/** hasControl tells whether ComfyUI adds a "control after generate" widget
 *  after this input: the option, else a seed's name. */
function hasControl(inp: InputSpec): boolean {
  const opt = inp.schema["x-face0-randomize"];
  if (opt !== undefined) return !!opt;
  return baseType(inp.type) === "INT" && isSeed(inp);
}

/** mapWidgets assigns a node's widget values to its inputs. */
export function mapWidgets(
  spec: NodeSpec,
  vals: unknown[] | Record<string, unknown> | undefined,
): { values: Record<string, unknown>; control: Record<string, string> } {
  const values: Record<string, unknown> = {};
  const control: Record<string, string> = {};
  if (!vals) return { values, control };
  const widgets = widgetInputs(spec);
  if (!Array.isArray(vals)) {
    for (const w of widgets) if (w.name in vals) values[w.name] = vals[w.name];
    return { values, control };
  }
  let i = 0;
  for (let k = 0; k < widgets.length && i < vals.length; k++) {
    const w = widgets[k];
    values[w.name] = vals[i++];
    if (hasControl(w) && typeof vals[i] === "string" && controlValues.has(vals[i] as string)) {
      control[w.name] = vals[i++] as string;
    }
    // Older files keep the upload button's value ("image") after the file
    // name; newer ones do not. It is there when the values outnumber the
    // widgets still to come.
    if (isImageUpload(spec.type, w) && typeof vals[i] === "string" && vals.length - i > widgets.length - k - 1) i++;
  }
  return { values, control };
}

export type Report = { missing: string[]; dropped: string[] };

/** fromLitegraph converts a ComfyUI editor file into a native workflow. */
export function fromLitegraph(f: LitegraphFile, specs: Record<string, NodeSpec>): { wf: Native; report: Report } {
  const report: Report = { missing: [], dropped: [] };
  const nodes = f.nodes.filter((n) => n && (typeof n.id === "number" || typeof n.id === "string") && typeof n.type === "string");
  const byId = new Map(nodes.map((n) => [String(n.id), n]));
  const subgraphs = new Map<string, string>();
  const defs = (f.definitions && typeof f.definitions === "object" ? f.definitions : {}) as { subgraphs?: unknown };
  for (const sg of Array.isArray(defs.subgraphs) ? (defs.subgraphs as { id?: unknown; name?: unknown }[]) : []) {
    if (sg && typeof sg.id === "string") subgraphs.set(sg.id, typeof sg.name === "string" && sg.name.trim() ? sg.name.trim() : "unnamed");
  }
  // Links, from either schema.
  const links = new Map<number, LLink>();
  for (const l of (Array.isArray(f.links) ? f.links : []) as unknown[]) {
    if (Array.isArray(l) && l.length >= 5) {
      links.set(Number(l[0]), { id: Number(l[0]), origin_id: l[1], origin_slot: Number(l[2]), target_id: l[3], target_slot: Number(l[4]) });
    } else if (l && typeof l === "object") {
      const o = l as LLink;
      if (typeof o.id === "number") links.set(o.id, { ...o, origin_slot: Number(o.origin_slot), target_slot: Number(o.target_slot) });
    }
  }
  // Link reroutes: version 1 at the top, 0.4 in extra with the links'
  // parents in extra.linkExtensions.
  const extra = (f.extra && typeof f.extra === "object" ? f.extra : {}) as Record<string, unknown>;
  const lreroutes = new Map<number, LReroute>();
  for (const r of [...((f.reroutes as LReroute[]) || []), ...((extra.reroutes as LReroute[]) || [])]) {
    if (r && typeof r.id === "number") lreroutes.set(r.id, r);
  }
  for (const x of (extra.linkExtensions as { id: number; parentId: number }[]) || []) {
    const l = links.get(x?.id);
    if (l && typeof x.parentId === "number") l.parentId = x.parentId;
  }

  const reroutes: { id: string; position: { x: number; y: number }; from?: { node: string; output: string } }[] = [];
  const rerouteIds = new Set<string>();
  // Legacy Reroute nodes keep their id (as "reroute_<id>", their links pass
  // through them); link reroutes get "rr_<id>".
  const legacyReroute = (id: string) => "reroute_" + nodeId(id);
  const outputName = (origin: LNode, slot: number): string => {
    const spec = specs[origin.type];
    return spec?.outputs[slot]?.name ?? origin.outputs?.[slot]?.name ?? String(slot);
  };
  // source follows a link to the node output behind it, through Reroute
  // nodes; the first reroute it met is where the link is drawn from.
  const source = (l: LLink): { node: string; output: string; via?: string } | null => {
    let cur: LLink | undefined = l;
    const seen = new Set<number>();
    let via: string | undefined;
    while (cur && !seen.has(cur.id)) {
      seen.add(cur.id);
      const origin = byId.get(String(cur.origin_id));
      if (!origin) return null;
      if (origin.type === "Reroute") {
        via ??= legacyReroute(String(origin.id));
        const up = origin.inputs?.[0]?.link;
        cur = typeof up === "number" ? links.get(up) : undefined;
        continue;
      }
      if (origin.type === "PrimitiveNode") return null;
      return { node: nodeId(origin.id), output: outputName(origin, cur.origin_slot), via };
    }
    return null;
  };
  const lrPoint = (rid: number, from: { node: string; output: string }): string => {
    // A chain of link reroutes, root first; each becomes a reroute point.
    const chain: LReroute[] = [];
    const seen = new Set<number>();
    for (let r = lreroutes.get(rid); r && !seen.has(r.id); r = r.parentId !== undefined ? lreroutes.get(r.parentId) : undefined) {
      seen.add(r.id);
      chain.unshift(r);
    }
    let prev = from;
    for (const r of chain) {
      const id = "rr_" + r.id;
      if (!rerouteIds.has(id)) {
        rerouteIds.add(id);
        const p = vec(r.pos) || [0, 0];
        reroutes.push({ id, position: { x: Math.round(p[0]), y: Math.round(p[1]) }, from: prev });
      }
      prev = { node: id, output: "out" };
    }
    return "rr_" + rid;
  };

  const out: NativeNode[] = [];
  const notes: Record<string, unknown>[] = [];
  let primitives = 0;
  for (const n of nodes) {
    const id = nodeId(n.id);
    const pos = vec(n.pos) || [0, 0];
    const size = vec(n.size);
    const position = { x: Math.round(pos[0]), y: Math.round(pos[1]) };
    if (n.type === "Note" || n.type === "MarkdownNote") {
      const vals = Array.isArray(n.widgets_values) ? n.widgets_values : [];
      const note: Record<string, unknown> = { id: "note_" + id, position, text: String(vals[0] ?? "") };
      if (size) note.size = [Math.round(size[0]), Math.round(size[1])];
      if (n.color) note.color = n.color;
      if (n.bgcolor) note.bgcolor = n.bgcolor;
      notes.push(note);
      continue;
    }
    if (n.type === "Reroute") {
      const rid = legacyReroute(id);
      rerouteIds.add(rid);
      const up = n.inputs?.[0]?.link;
      const l = typeof up === "number" ? links.get(up) : undefined;
      const origin = l && byId.get(String(l.origin_id));
      const r: (typeof reroutes)[number] = { id: rid, position };
      if (l && origin) r.from = origin.type === "Reroute" ? { node: legacyReroute(String(origin.id)), output: "out" } : { node: nodeId(origin.id), output: outputName(origin, l.origin_slot) };
      reroutes.push(r);
      continue;
    }
    if (n.type === "PrimitiveNode") {
      primitives++;
      continue;
    }
    const spec = specs[n.type];
    // A subgraph's node has its definition's id as its type: it is named by
    // the subgraph's name instead (this editor does not open subgraphs).
    const sub = subgraphs.get(n.type);
    const type = sub !== undefined ? ("Subgraph: " + sub).slice(0, 128) : n.type;
    const nn: NativeNode = { id, type: typeRE.test(type) ? type : "_" + type.replace(/[^A-Za-z0-9_.:/ +-]/g, "_").slice(0, 127) };
    if (n.title && n.title !== spec?.displayName && n.title !== n.type) nn.title = n.title.slice(0, 200);
    if (n.mode === 2) nn.mode = "muted";
    else if (n.mode === 4) nn.mode = "bypassed";
    const ui: Record<string, unknown> = { position };
    if (size) ui.size = [Math.round(size[0]), Math.round(size[1])];
    if (n.color) ui.color = n.color;
    if (n.bgcolor) ui.bgcolor = n.bgcolor;
    if (n.flags?.collapsed) ui.collapsed = true;
    const inputs: Record<string, unknown> = {};
    if (spec) {
      const { values, control } = mapWidgets(spec, n.widgets_values);
      Object.assign(inputs, values);
      if (Object.keys(control).length) ui.control = control;
    } else {
      if (!report.missing.includes(nn.type)) report.missing.push(nn.type);
      const slots = (s: LSlot[] | undefined) => (s || []).map((x) => ({ name: String(x.name), type: typeof x.type === "string" ? x.type : "*" }));
      ui.comfy = { inputs: slots(n.inputs), outputs: slots(n.outputs), widgets_values: n.widgets_values ?? [] };
      if (nn.type !== n.type) (ui.comfy as Record<string, unknown>).type = n.type;
    }
    const via: Record<string, string> = {};
    for (const slot of n.inputs || []) {
      if (typeof slot.link !== "number") continue;
      const l = links.get(slot.link);
      if (!l) continue;
      const src = source(l);
      const name = slot.widget?.name || slot.name;
      if (!src) continue; // from a PrimitiveNode: the widget holds its value
      inputs[name] = { node: src.node, output: src.output };
      if (l.parentId !== undefined && lreroutes.has(l.parentId)) via[name] = lrPoint(l.parentId, { node: src.node, output: src.output });
      else if (src.via) via[name] = src.via;
    }
    if (Object.keys(via).length) ui.via = via;
    nn.inputs = inputs;
    nn.ui = ui;
    out.push(nn);
  }
  if (primitives) report.dropped.push(`${primitives} PrimitiveNode${primitives > 1 ? "s" : ""} (their values stay in the widgets they set)`);
  const groups = ((f.groups as LGroup[]) || []).flatMap((g, i) => {
    const b = g?.bounding;
    if (!Array.isArray(b) || b.length < 4) return [];
    const grp: Record<string, unknown> = { id: "group_" + (i + 1), position: { x: Math.round(b[0]), y: Math.round(b[1]) }, size: [Math.round(b[2]), Math.round(b[3])], title: String(g.title ?? "Group") };
    if (g.color) grp.color = g.color;
    return [grp];
  });
  const wf: Native = { version: 1, nodes: out };
  const info = (extra.info && typeof extra.info === "object" ? extra.info : {}) as { name?: unknown; description?: unknown };
  if (typeof info.name === "string" && info.name) wf.name = info.name.slice(0, 200);
  if (typeof info.description === "string" && info.description) wf.description = info.description;
  const ui: Record<string, unknown> = {};
  if (notes.length) ui.notes = notes;
  if (groups.length) ui.groups = groups;
  if (reroutes.length) ui.reroutes = reroutes;
  if (Object.keys(ui).length) wf.ui = ui;
  return { wf, report };
}
