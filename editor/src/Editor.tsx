// The editor: the canvas with its nodes and links, and what acts on them
// (loading, queueing, copy and paste, the keyboard, menus, the panels).
import {
  addEdge,
  Background,
  type Connection,
  Controls,
  type Edge,
  type FinalConnectionState,
  type IsValidConnection,
  MiniMap,
  type NodeTypes,
  ReactFlow,
  reconnectEdge,
  useEdgesState,
  useNodesState,
  useReactFlow,
  type XYPosition,
} from "@xyflow/react";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { api } from "./api";
import { EditorContext, type EditorAPI, typeColor } from "./context";
import { edgeId, type FEdge, type FNode, fromNative, type Graph, type Meta, type Native, readWorkflow, toNative } from "./convert";
import { GroupView, NoteView, RerouteView } from "./ExtraNodes";
import * as G from "./graph";
import { Confirm, ConnectionHint, ContextMenu, NodeSearch, type SearchFilter } from "./Menus";
import { NodeView } from "./NodeView";
import { Palette } from "./Palette";
import { QueuePanel } from "./QueuePanel";
import { clearCached, getRun, say, setGraph, setRun, useRun } from "./run";
import { assignable, type NodeSpec } from "./spec";
import { Toolbar } from "./Toolbar";
import { useClipboard } from "./clipboard";
import { useFiles } from "./files";
import { useGroupDrag } from "./useGroupDrag";
import { useMenus } from "./useMenus";
import { useQueue } from "./useQueue";
import { useScriptHooks } from "./scripthooks";
import { useAddNodes } from "./useAddNodes";
import { useFit } from "./useFit";
import { markSaved, storageKey, unsaved, useUndo } from "./useUndo";

const paletteKey = "face0.editor.palette";
const nodeTypes: NodeTypes = { face0: NodeView, note: NoteView, group: GroupView, reroute: RerouteView };

export function Editor({ specs, colors }: { specs: Record<string, NodeSpec>; colors: Record<string, string> }) {
  const [nodes, setNodes, onNodesChange] = useNodesState<FNode>([]);
  const [edges, setEdges, onEdgesChange] = useEdgesState<FEdge>([]);
  const [meta, setMeta] = useState<Meta>({});
  const [ready, setReady] = useState(false);
  const [renaming, setRenaming] = useState<string | null>(null);
  const [panel, setPanel] = useState(false);
  const [palette, setPalette] = useState(localStorage.getItem(paletteKey) !== "hidden");
  const [batch, setBatch] = useState(1);
  const [toast, setToast] = useState<{ text: string; x: number; y: number } | null>(null);
  const [ask, setAsk] = useState<{ text: string; yes: string; then: () => void } | null>(null);
  const rf = useReactFlow<FNode, FEdge>();
  const wrapRef = useRef<HTMLDivElement>(null);
  const nodesRef = useRef(nodes);
  nodesRef.current = nodes;
  const edgesRef = useRef(edges);
  edgesRef.current = edges;
  const metaRef = useRef(meta);
  metaRef.current = meta;
  const refs = useMemo(() => ({ nodes: nodesRef, edges: edgesRef, meta: metaRef }), []);
  /** where the mouse last was over the canvas, in flow coordinates */
  const pointer = useRef<XYPosition | null>(null);

  const graph = useCallback((): Graph => ({ nodes: nodesRef.current, edges: edgesRef.current, meta: metaRef.current }), []);
  const current = useCallback((): Native => toNative(graph(), specs), [graph, specs]);
  const setAll = useCallback(
    (ns: FNode[]) => {
      nodesRef.current = ns;
      setNodes(ns);
    },
    [setNodes],
  );

  const view = useFit(nodes, rf);
  const apply = useCallback(
    (g: Graph, fit: boolean) => {
      setAll(g.nodes.map(G.withDefaults));
      setEdges(g.edges);
      setMeta(g.meta);
      if (fit && g.nodes.length > 0) view.fit();
    },
    [setAll, setEdges, view.fit],
  );
  const hist = useUndo({ nodes, edges, meta, ready, refs, apply, current });

  const load = useCallback(
    (wf: unknown, source: string) => {
      try {
        const { wf: n, report, format } = readWorkflow(wf, specs);
        const g = fromNative(n, specs);
        setRun((s) => ({ ...s, nodes: {}, running: [] }));
        apply(g, true);
        markSaved(toNative(g, specs));
        const missing = [...new Set(n.nodes.filter((x) => !specs[x.type]).map((x) => x.type))];
        const notes = [...(report?.dropped || [])];
        const what = format === "face0" ? source : `${source} (${format} format)`;
        if (missing.length) say(`Loaded ${what}; missing node types: ${missing.join(", ")}${notes.length ? "; left out: " + notes.join(", ") : ""}`, "error");
        else say(`Loaded ${what}${notes.length ? "; left out: " + notes.join(", ") : ""}`, "ok");
        return true;
      } catch (e) {
        say(`Cannot load ${source}: ${(e as Error).message}`, "error");
        return false;
      }
    },
    [specs, apply],
  );

  // First visit: the graph from the last visit, else the server's default.
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return;
    started.current = true;
    (async () => {
      const saved = localStorage.getItem(storageKey);
      if (saved) {
        try {
          apply(fromNative(readWorkflow(saved, specs).wf, specs), true);
          setReady(true);
          return;
        } catch {
          /* fall through to the default */
        }
      }
      try {
        load(await api.defaultWorkflow(), "the default workflow");
      } catch (e) {
        say(`No default workflow: ${(e as Error).message}`, "error");
      }
      setReady(true);
    })();
  }, [specs, apply, load]);

  /** discard runs then once the user agrees to lose an unsaved graph. */
  const discard = useCallback(
    (what: string, then: () => void) => {
      if (!unsaved(current())) return then();
      setAsk({ text: `The graph has changes that are not saved. ${what} anyway?`, yes: what, then });
    },
    [current],
  );

  const typeOf = useCallback(
    (nodeId: string, handle: string | null | undefined, dir: "in" | "out") => G.portType(nodesRef.current, edgesRef.current, specs, nodeId, handle, dir),
    [specs],
  );

  const { at, addNodes, addNode, addVirtual } = useAddNodes({ specs, rf, nodesRef, pointer, wrapRef, setAll, setEdges });

  const why = useCallback(
    (c: Connection | Edge): string => {
      if (!c.source || !c.target) return "";
      if (G.createsCycle(edgesRef.current, c.source, c.target)) return "that link would make a cycle";
      const from = typeOf(c.source, c.sourceHandle, "out");
      const target = nodesRef.current.find((n) => n.id === c.target);
      // A reroute takes what its links onwards take.
      const tos =
        target?.type === "reroute"
          ? G.downstream(nodesRef.current, edgesRef.current, target.id).map((d) => typeOf(d.node, d.input, "in"))
          : [typeOf(c.target, c.targetHandle, "in")];
      for (const to of tos) {
        const [ok, reason] = assignable(from, to);
        if (!ok) return reason;
      }
      return "";
    },
    [typeOf],
  );
  const isValidConnection: IsValidConnection<FEdge> = useCallback((c) => why(c) === "", [why]);

  /** changed marks nodes (and what reads from them) as no longer cached. */
  const changed = useCallback((ids: string[]) => clearCached([...ids, ...G.downstreamOf(edgesRef.current, ids)]), []);

  const link = useCallback(
    (c: Connection) => {
      setEdges((es) =>
        addEdge(
          { ...c, id: edgeId(c.source, c.sourceHandle || "", c.target, c.targetHandle || "") },
          // An input takes one link: a new one replaces the old.
          es.filter((e) => !(e.target === c.target && e.targetHandle === c.targetHandle)),
        ),
      );
      changed([c.target]);
    },
    [setEdges, changed],
  );

  const refuse = useCallback((text: string, x: number, y: number) => {
    say(text, "error");
    setToast({ text, x, y });
  }, []);
  useEffect(() => {
    if (!toast) return;
    const t = setTimeout(() => setToast(null), 4000);
    return () => clearTimeout(t);
  }, [toast]);

  const onConnect = useCallback(
    (c: Connection) => {
      const r = why(c);
      if (r) return say(r, "error");
      link(c);
    },
    [why, link],
  );

  const menus = useMenus({ specs, rf, nodesRef, setAll, setEdges, addNode, addVirtual, link, typeOf, setRenaming, changed });

  const onConnectEnd = useCallback(
    (e: MouseEvent | TouchEvent, s: FinalConnectionState) => {
      const pt = "changedTouches" in e ? e.changedTouches[0] : e;
      if (s.toHandle && s.isValid === false && s.fromHandle) {
        const src = s.fromHandle.type === "source" ? s.fromHandle : s.toHandle;
        const dst = s.fromHandle.type === "source" ? s.toHandle : s.fromHandle;
        const r = why({ source: src.nodeId, sourceHandle: src.id ?? null, target: dst.nodeId, targetHandle: dst.id ?? null });
        if (r) refuse(r, pt.clientX, pt.clientY);
        return;
      }
      // Dropped on the canvas: search for a node that takes (or gives) it.
      if (!s.toHandle && s.fromHandle && (e.target as Element | null)?.classList?.contains("react-flow__pane")) {
        menus.searchForLink(pt.clientX, pt.clientY, s.fromHandle.nodeId, s.fromHandle.id ?? "", s.fromHandle.type);
      }
    },
    [why, refuse, menus],
  );

  const reconnected = useRef(true);
  const onReconnect = useCallback(
    (old: Edge, c: Connection) => {
      reconnected.current = true;
      if (why(c)) return;
      setEdges((es) => {
        const rest = es.filter((e) => e.id === old.id || !(e.target === c.target && e.targetHandle === c.targetHandle));
        return reconnectEdge(old, c, rest).map((e) =>
          e.id === old.id || !rest.includes(e) ? { ...e, id: edgeId(e.source, e.sourceHandle || "", e.target, e.targetHandle || "") } : e,
        );
      });
      changed([old.target, c.target]);
    },
    [why, setEdges, changed],
  );
  const onReconnectEnd = useCallback(
    (_: unknown, edge: Edge) => {
      // A link dragged off its input and dropped on the canvas is removed.
      if (!reconnected.current) {
        setEdges((es) => es.filter((e) => e.id !== edge.id));
        changed([edge.target]);
      }
      reconnected.current = true;
    },
    [setEdges, changed],
  );

  useEffect(() => {
    const parents = new Map<string, string[]>();
    for (const e of edges) {
      if (!parents.has(e.target)) parents.set(e.target, []);
      parents.get(e.target)!.push(e.source);
    }
    setGraph((id) => parents.get(id) || []);
  }, [edges]);

  const mapNode = useCallback(
    (nodeId: string, f: (n: FNode) => FNode) => setAll(nodesRef.current.map((n) => (n.id === nodeId ? f(n) : n))),
    [setAll],
  );
  const setValue = useCallback(
    (nodeId: string, input: string, value: unknown) => {
      mapNode(nodeId, (n) => ({ ...n, data: { ...n.data, values: { ...n.data.values, [input]: value } } }));
      const r = getRun().nodes[nodeId];
      if (r?.inputErrors?.[input]) {
        const rest = { ...r.inputErrors };
        delete rest[input];
        setRun((s) => ({ ...s, nodes: { ...s.nodes, [nodeId]: { ...r, inputErrors: rest } } }));
      }
      changed([nodeId]);
    },
    [mapNode, changed],
  );

  const editorAPI: EditorAPI = useMemo(() => {
    const linked = new Set(edges.map((e) => e.target + "\u0000" + (e.targetHandle || "")));
    return {
      specs,
      colors,
      linked,
      setValue,
      renaming,
      setRenaming,
      typeOf: (id, h, dir) => typeOf(id, h, dir),
      setTitle: (nodeId, title) =>
        mapNode(nodeId, (n) => {
          const data = { ...n.data };
          if (title) data.title = title;
          else delete data.title;
          return { ...n, data };
        }),
      patch: (nodeId, p) => mapNode(nodeId, (n) => ({ ...n, data: { ...n.data, ...p } })),
      removeNode: (nodeId) => {
        setAll(nodesRef.current.filter((n) => n.id !== nodeId));
        setEdges((es) => es.filter((e) => e.source !== nodeId && e.target !== nodeId));
      },
      setControl: (nodeId, input, c) =>
        mapNode(nodeId, (n) => {
          const ui = { ...(n.data.ui || {}) };
          ui.control = { ...((ui.control as Record<string, string>) || {}), [input]: c };
          if (ui.randomize) {
            const r = { ...(ui.randomize as Record<string, boolean>) };
            delete r[input];
            ui.randomize = Object.keys(r).length ? r : undefined;
          }
          return { ...n, data: { ...n.data, ui } };
        }),
      uploadTo: async (nodeId, input, file) => {
        try {
          const ref = await api.upload(file);
          setValue(nodeId, input, ref.subfolder ? `${ref.subfolder}/${ref.name}` : ref.name);
          setRun((s) => ({ ...s, uploads: s.uploads + 1 }));
          say(`Uploaded ${ref.name}`, "ok");
          // The file is one of the input's choices now.
          window.dispatchEvent(new Event("face0:specs-stale"));
        } catch (e) {
          say(`Upload failed: ${(e as Error).message}`, "error");
        }
      },
    };
  }, [specs, colors, edges, setValue, setAll, setEdges, mapNode, renaming, typeOf]);

  const queue = useQueue({ specs, rf, nodesRef, setAll, current, batch });

  const { save, loadFile, onDrop } = useFiles({ specs, rf, current, load, discard, addNode });

  const { copy, paste } = useClipboard({ nodesRef, edgesRef, addNodes, at, hasPointer: () => !!pointer.current });

  /** toggleMode mutes or bypasses the selected nodes, or undoes it when they all are. */
  const toggleMode = useCallback(
    (m: "muted" | "bypassed") => {
      const sel = nodesRef.current.filter((n) => n.selected && n.type === "face0");
      if (!sel.length) return;
      const all = sel.every((n) => n.data.mode === m);
      const ids = new Set(sel.map((n) => n.id));
      setAll(nodesRef.current.map((n) => (ids.has(n.id) ? { ...n, data: { ...n.data, mode: all ? undefined : m } } : n)));
      say(`${sel.length} node${sel.length > 1 ? "s" : ""} ${all ? "back to normal" : m}`);
    },
    [setAll],
  );

  const selectAll = useCallback(() => setAll(nodesRef.current.map((n) => (n.selected ? n : { ...n, selected: true }))), [setAll]);

  /** groupSelected puts a group around the selected nodes. */
  const groupSelected = useCallback(() => {
    const sel = nodesRef.current.filter((n) => n.selected && n.type !== "group");
    if (!sel.length) return;
    const rs = sel.map((n) => G.rectOf(n, specs));
    const x = Math.min(...rs.map((r) => r.x)) - 20;
    const y = Math.min(...rs.map((r) => r.y)) - 50;
    const w = Math.max(...rs.map((r) => r.x + r.w)) + 20 - x;
    const h = Math.max(...rs.map((r) => r.y + r.h)) + 20 - y;
    const id = G.newId("group", new Set(nodesRef.current.map((n) => n.id)));
    const g = G.withDefaults({ id, type: "group", position: { x, y }, width: w, height: h, data: { nodeType: "", values: {}, text: "Group" } });
    setAll([g, ...nodesRef.current]);
  }, [specs, setAll]);

  const groupDrag = useGroupDrag({ specs, nodesRef, setNodes });

  // Keyboard.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      const typing = !!t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
      const mod = e.ctrlKey || e.metaKey;
      if (!mod) {
        // R re-reads the node specs: choices such as the input folder's
        // images and the models, as ComfyUI's R does.
        if (!typing && !e.altKey && e.key.toLowerCase() === "r") {
          window.dispatchEvent(new Event("face0:specs-refresh"));
          say("Refreshing node choices…");
        }
        return;
      }
      const k = e.key.toLowerCase();
      const act = (f: () => void) => {
        e.preventDefault();
        f();
      };
      if (k === "enter") act(() => queue());
      else if (k === "s") act(save);
      else if (typing) return;
      else if (k === "z" && !e.shiftKey) act(hist.undo);
      else if ((k === "z" && e.shiftKey) || k === "y") act(hist.redo);
      else if (k === "c") {
        if (copy()) e.preventDefault();
      } else if (k === "v") act(paste);
      else if (k === "a") act(selectAll);
      else if (k === "b") act(() => toggleMode("bypassed"));
      else if (k === "m") act(() => toggleMode("muted"));
      else if (k === "g") act(groupSelected);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [queue, save, hist.undo, hist.redo, copy, paste, selectAll, toggleMode, groupSelected]);

  const settled = useCallback(() => hist.settled() && !view.pending(), [hist.settled, view.pending]);
  useScriptHooks({ current, load, queue, undo: hist.undo, redo: hist.redo, addNode, why, link, setAll, nodesRef, position: hist.position, settled, fit: view.fit });

  const styledEdges = useMemo(
    () =>
      edges.map((e) => {
        const c = typeColor(colors, typeOf(e.source, e.sourceHandle, "out"));
        return e.style?.stroke === c ? e : { ...e, style: { ...e.style, stroke: c, strokeWidth: 2.5 } };
      }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [edges, colors, typeOf, nodes.length],
  );

  const running = useRun((s) => s.running);

  return (
    <EditorContext.Provider value={editorAPI}>
      <div className="f0-app">
        <Toolbar
          name={meta.name || ""}
          onName={(name) => setMeta((m) => ({ ...m, name: name || undefined }))}
          batch={batch}
          onBatch={setBatch}
          onQueue={() => queue()}
          onStop={() => api.interrupt().catch((e) => say((e as Error).message, "error"))}
          panel={panel}
          onPanel={() => setPanel((p) => !p)}
          palette={palette}
          onPalette={() => {
            localStorage.setItem(paletteKey, palette ? "hidden" : "shown");
            setPalette(!palette);
          }}
          canUndo={hist.canUndo}
          canRedo={hist.canRedo}
          onUndo={hist.undo}
          onRedo={hist.redo}
          onSave={save}
          onLoadFile={loadFile}
          onDefault={() =>
            discard("Replace it", () =>
              api.defaultWorkflow().then(
                (wf) => load(wf, "the default workflow"),
                (e) => say((e as Error).message, "error"),
              ),
            )
          }
          onClear={() =>
            discard("Clear it", () => {
              apply({ nodes: [], edges: [], meta: {} }, false);
              markSaved(toNative({ nodes: [], edges: [], meta: {} }, specs));
              setRun((s) => ({ ...s, nodes: {} }));
            })
          }
        />
        <div className="f0-main">
          {palette && <Palette specs={specs} onAdd={(t) => addNode(t)} />}
          <div
            className="f0-canvas"
            ref={wrapRef}
            onDragOver={(e) => e.preventDefault()}
            onDrop={onDrop}
            onMouseMove={(e) => (pointer.current = rf.screenToFlowPosition({ x: e.clientX, y: e.clientY }))}
            onMouseLeave={() => (pointer.current = null)}
            onDoubleClick={(e) => {
              if ((e.target as Element).classList.contains("react-flow__pane")) menus.search(e.clientX, e.clientY);
            }}
          >
            <ReactFlow<FNode, FEdge>
              nodes={nodes}
              edges={styledEdges}
              nodeTypes={nodeTypes}
              onNodesChange={onNodesChange}
              onEdgesChange={onEdgesChange}
              onConnect={onConnect}
              onConnectEnd={onConnectEnd}
              isValidConnection={isValidConnection}
              onReconnect={onReconnect}
              onReconnectStart={() => (reconnected.current = false)}
              onReconnectEnd={onReconnectEnd}
              onNodeDragStart={groupDrag.onNodeDragStart}
              onNodeDrag={groupDrag.onNodeDrag}
              onNodeDragStop={groupDrag.onNodeDragStop}
              onPaneContextMenu={menus.onPaneMenu}
              onNodeContextMenu={menus.onNodeMenu}
              onEdgeContextMenu={menus.onEdgeMenu}
              deleteKeyCode={["Backspace", "Delete"]}
              zoomOnDoubleClick={false}
              elevateNodesOnSelect={false}
              minZoom={0.1}
              maxZoom={2.5}
              connectionRadius={28}
              reconnectRadius={12}
              proOptions={{ hideAttribution: true }}
              colorMode="dark"
              fitView
            >
              <Background gap={24} />
              <Controls />
              <MiniMap pannable zoomable style={{ width: 150, height: 100 }} nodeColor={(n) => (running.includes(n.id) ? "#4caf50" : "#555")} />
              <ConnectionHint why={why} />
            </ReactFlow>
          </div>
          {panel && <QueuePanel onLoad={(wf, source) => discard("Load it", () => load(wf, source))} onClose={() => setPanel(false)} />}
        </div>
        {menus.searchAt && (
          <NodeSearch x={menus.searchAt.x} y={menus.searchAt.y} specs={specs} filter={menus.searchAt.filter as SearchFilter | undefined} onPick={menus.pick} onClose={menus.closeSearch} />
        )}
        {menus.menu && <ContextMenu x={menus.menu.x} y={menus.menu.y} items={menus.menu.items} onClose={menus.closeMenu} />}
        {toast && (
          <div className="f0-toast" id="link-refused" style={{ left: toast.x + 12, top: toast.y + 12 }}>
            {toast.text}
          </div>
        )}
        {ask && (
          <Confirm
            text={ask.text}
            yes={ask.yes}
            onAnswer={(ok) => {
              setAsk(null);
              if (ok) ask.then();
            }}
          />
        )}
      </div>
    </EditorContext.Provider>
  );
}
