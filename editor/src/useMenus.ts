// The node search and the right-click menus: where they open, what they
// offer, and what a choice does (a node searched for from a dropped link is
// wired to it).
import type { Connection, Edge, ReactFlowInstance, XYPosition } from "@xyflow/react";
import { type MouseEvent as RMouseEvent, useCallback, useState } from "react";
import { edgeId, type FEdge, type FNode } from "./convert";
import * as G from "./graph";
import type { MenuItem, SearchFilter } from "./Menus";
import { assignable, type NodeSpec } from "./spec";

type Ref<T> = { current: T };

type Args = {
  specs: Record<string, NodeSpec>;
  rf: ReactFlowInstance<FNode, FEdge>;
  nodesRef: Ref<FNode[]>;
  setAll: (ns: FNode[]) => void;
  setEdges: (f: (es: FEdge[]) => FEdge[]) => void;
  addNode: (type: string, pos?: XYPosition) => string | null;
  addVirtual: (kind: "note" | "group" | "reroute", pos?: XYPosition) => string;
  link: (c: Connection) => void;
  typeOf: (nodeId: string, handle: string | null | undefined, dir: "in" | "out") => string;
  setRenaming: (id: string | null) => void;
  changed: (ids: string[]) => void;
};

type Search = { x: number; y: number; flow: XYPosition; filter?: SearchFilter; from?: { node: string; handle: string; kind: "source" | "target" } };

export function useMenus(a: Args) {
  const { specs, rf, nodesRef, setAll, setEdges, addNode, addVirtual, link, typeOf, setRenaming, changed } = a;
  const [searchAt, setSearch] = useState<Search | null>(null);
  const [menu, setMenu] = useState<{ x: number; y: number; items: MenuItem[] } | null>(null);

  const search = useCallback(
    (x: number, y: number) => {
      setMenu(null);
      setSearch({ x, y, flow: rf.screenToFlowPosition({ x, y }) });
    },
    [rf],
  );

  const searchForLink = useCallback(
    (x: number, y: number, node: string, handle: string, kind: "source" | "target") => {
      const type = typeOf(node, handle, kind === "source" ? "out" : "in");
      setSearch({ x, y, flow: rf.screenToFlowPosition({ x, y }), filter: { type, dir: kind === "source" ? "from-output" : "from-input" }, from: { node, handle, kind } });
    },
    [rf, typeOf],
  );

  const closeSearch = useCallback(() => setSearch(null), []);
  const closeMenu = useCallback(() => setMenu(null), []);

  const pick = useCallback(
    (type: string) => {
      const s = searchAt;
      setSearch(null);
      if (!s) return;
      const spec = specs[type];
      // A node that takes a link goes to the right of where it was dropped,
      // one that gives one to the left.
      const pos = s.from?.kind === "target" ? { x: s.flow.x - 280, y: s.flow.y - 20 } : { x: s.flow.x, y: s.flow.y - 20 };
      const id = addNode(type, pos);
      if (!id || !s.from || !spec || !s.filter) return;
      const t = s.filter.type;
      if (s.from.kind === "source") {
        const inp = spec.inputs.find((i) => !i.literal && assignable(t, i.type)[0]) || spec.inputs.find((i) => assignable(t, i.type)[0]);
        if (inp) link({ source: s.from.node, sourceHandle: s.from.handle, target: id, targetHandle: inp.name });
      } else {
        const out = spec.outputs.find((o) => assignable(o.type, t)[0]);
        if (out) link({ source: id, sourceHandle: out.name, target: s.from.node, targetHandle: s.from.handle });
      }
    },
    [searchAt, specs, addNode, link],
  );

  const selected = () => nodesRef.current.filter((n) => n.selected);
  const mapSel = (ids: Set<string>, f: (n: FNode) => FNode) => setAll(nodesRef.current.map((n) => (ids.has(n.id) ? f(n) : n)));

  const colourItems = (ids: Set<string>): MenuItem[] => [
    {
      label: "no colour",
      id: "colour-none",
      onClick: () =>
        mapSel(ids, (n) => {
          const ui = { ...(n.data.ui || {}) };
          delete ui.color;
          delete ui.bgcolor;
          return { ...n, data: { ...n.data, ui } };
        }),
    },
    ...Object.entries(G.nodeColors).map(([name, c]): MenuItem => ({
      label: name.replace("_", " "),
      id: "colour-" + name,
      onClick: () =>
        mapSel(ids, (n) => ({
          ...n,
          // A group takes the brighter colour, as in ComfyUI.
          data: { ...n.data, ui: { ...(n.data.ui || {}), ...(n.type === "group" ? { color: G.hex6(c.bgcolor) } : c) } },
        })),
    })),
  ];

  const onPaneMenu = useCallback(
    (e: RMouseEvent | MouseEvent) => {
      e.preventDefault();
      const x = e.clientX;
      const y = e.clientY;
      const flow = rf.screenToFlowPosition({ x, y });
      setSearch(null);
      setMenu({
        x,
        y,
        items: [
          { label: "Add node…", hint: "double-click", id: "add-node", onClick: () => setSearch({ x, y, flow }) },
          { label: "Add note", id: "add-note", onClick: () => addVirtual("note", flow) },
          { label: "Add group", id: "add-group", onClick: () => addVirtual("group", flow) },
          { label: "Add reroute", id: "add-reroute", onClick: () => addVirtual("reroute", flow) },
          "-",
          { label: "Select all", hint: "Ctrl+A", id: "select-all", onClick: () => setAll(nodesRef.current.map((n) => ({ ...n, selected: true }))) },
          { label: "Fit view", id: "fit", onClick: () => rf.fitView({ padding: 0.15, maxZoom: 1, duration: 200 }) },
        ],
      });
    },
    [rf, addVirtual, setAll, nodesRef],
  );

  const onNodeMenu = useCallback(
    (e: RMouseEvent, node: FNode) => {
      e.preventDefault();
      // Right-click on a node outside the selection acts on that node alone.
      let sel = selected();
      if (!node.selected) {
        setAll(nodesRef.current.map((n) => ({ ...n, selected: n.id === node.id })));
        sel = [node];
      }
      const ids = new Set(sel.map((n) => n.id));
      const flows = sel.filter((n) => n.type === "face0");
      const setMode = (m: "muted" | "bypassed") => {
        const all = flows.every((n) => n.data.mode === m);
        const fl = new Set(flows.map((n) => n.id));
        mapSel(fl, (n) => ({ ...n, data: { ...n.data, mode: all ? undefined : m } }));
      };
      const remove = (which: Set<string>) => {
        setAll(nodesRef.current.filter((n) => !which.has(n.id)));
        setEdges((es) => es.filter((x) => !which.has(x.source) && !which.has(x.target)));
      };
      const items: MenuItem[] = [];
      if (sel.length === 1 && (node.type === "face0" || node.type === "group")) items.push({ label: node.type === "group" ? "Edit title" : "Title…", id: "title", onClick: () => setRenaming(node.id) });
      if (node.type !== "reroute") items.push({ label: "Colour", id: "colour", items: colourItems(ids) });
      if (flows.length) {
        const mode = (m: string) => flows.every((n) => n.data.mode === m);
        items.push(
          { label: mode("bypassed") ? "Un-bypass" : "Bypass", hint: "Ctrl+B", id: "bypass", onClick: () => setMode("bypassed") },
          { label: mode("muted") ? "Unmute" : "Mute", hint: "Ctrl+M", id: "mute", onClick: () => setMode("muted") },
          {
            label: flows.every((n) => n.data.ui?.collapsed) ? "Expand" : "Collapse",
            id: "collapse",
            onClick: () => {
              const c = !flows.every((n) => n.data.ui?.collapsed);
              mapSel(new Set(flows.map((n) => n.id)), (n) => ({ ...n, data: { ...n.data, ui: { ...(n.data.ui || {}), collapsed: c || undefined } } }));
            },
          },
        );
      }
      if (node.type === "group") {
        items.push("-", { label: "Remove group, keep its nodes", id: "ungroup", onClick: () => remove(new Set([node.id])) });
        items.push({
          label: "Remove group and its nodes",
          id: "remove-group-nodes",
          onClick: () => {
            const box = G.rectOf(node, specs);
            const inside = nodesRef.current.filter((n) => n.id === node.id || (n.type !== "group" && G.inside(G.rectOf(n, specs), box)));
            remove(new Set(inside.map((n) => n.id)));
          },
        });
      } else items.push("-", { label: sel.length > 1 ? `Remove ${sel.length} nodes` : "Remove", hint: "Delete", id: "remove", onClick: () => remove(ids) });
      setSearch(null);
      setMenu({ x: e.clientX, y: e.clientY, items });
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [specs, setAll, setEdges, setRenaming, nodesRef],
  );

  const onEdgeMenu = useCallback(
    (e: RMouseEvent, edge: Edge) => {
      e.preventDefault();
      const flow = rf.screenToFlowPosition({ x: e.clientX, y: e.clientY });
      setSearch(null);
      setMenu({
        x: e.clientX,
        y: e.clientY,
        items: [
          {
            label: "Add reroute here",
            id: "reroute-here",
            onClick: () => {
              const id = addVirtual("reroute", { x: flow.x - 12, y: flow.y - 12 });
              setEdges((es) => [
                ...es.filter((x) => x.id !== edge.id),
                { id: edgeId(edge.source, edge.sourceHandle || "", id, "in"), source: edge.source, sourceHandle: edge.sourceHandle, target: id, targetHandle: "in" },
                { id: edgeId(id, "out", edge.target, edge.targetHandle || ""), source: id, sourceHandle: "out", target: edge.target, targetHandle: edge.targetHandle },
              ]);
            },
          },
          {
            label: "Remove link",
            id: "remove-link",
            onClick: () => {
              setEdges((es) => es.filter((x) => x.id !== edge.id));
              changed([edge.target]);
            },
          },
        ],
      });
    },
    [rf, addVirtual, setEdges, changed],
  );

  return { searchAt, search, searchForLink, pick, closeSearch, menu, closeMenu, onPaneMenu, onNodeMenu, onEdgeMenu };
}

