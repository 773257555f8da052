import {
  addEdge,
  Background,
  type Connection,
  Controls,
  type Edge,
  type IsValidConnection,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  reconnectEdge,
  useEdgesState,
  useNodesState,
  useReactFlow,
} from "@xyflow/react";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { api, HTTPError, type NodeErrors } from "./api";
import { EditorContext, type EditorAPI, typeColor } from "./context";
import { edgeId, type FEdge, type FNode, fromNative, type Graph, type Meta, type Native, parseWorkflow, toNative } from "./convert";
import { NodeView } from "./NodeView";
import { dragMime, Palette } from "./Palette";
import { isPNG, pngText } from "./png";
import { clearForRun, connect, getRun, setGraph, setRun, showNodeErrors, say, useRun } from "./run";
import { assignable, buildSpecs, defaultValue, isSeed, type NodeSpec } from "./spec";
import { randomSeed } from "./widgets";

const storageKey = "face0.editor.workflow";
const clipboardKey = "face0.editor.clipboard";
const nodeTypes = { face0: NodeView };

function clientId(): string {
  let id = sessionStorage.getItem("face0.clientId");
  if (!id) {
    id = (crypto.randomUUID?.() || Math.random().toString(36).slice(2)) as string;
    sessionStorage.setItem("face0.clientId", id);
  }
  return id;
}

type Snapshot = string;

function snapshot(nodes: FNode[], edges: FEdge[], meta: Meta): Snapshot {
  return JSON.stringify({
    n: nodes.map((n) => ({ id: n.id, p: n.position, d: n.data })),
    e: edges.map((e) => [e.source, e.sourceHandle, e.target, e.targetHandle]),
    m: meta,
  });
}

function restore(s: Snapshot): Graph {
  const o = JSON.parse(s) as { n: { id: string; p: { x: number; y: number }; d: FNode["data"] }[]; e: string[][]; m: Meta };
  return {
    nodes: o.n.map((n) => ({ id: n.id, type: "face0", position: n.p, data: n.d })),
    edges: o.e.map(([s, sh, t, th]) => ({ id: edgeId(s, sh, t, th), source: s, sourceHandle: sh, target: t, targetHandle: th })),
    meta: o.m,
  };
}

function newId(type: string, taken: Set<string>): string {
  const stem = type.toLowerCase().replace(/[^a-z0-9_]+/g, "_").slice(0, 40) || "node";
  for (let i = 1; ; i++) {
    const id = `${stem}_${i}`;
    if (!taken.has(id)) return id;
  }
}

function download(name: string, text: string) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function Editor({ specs, colors }: { specs: Record<string, NodeSpec>; colors: Record<string, string> }) {
  const [nodes, setNodes, onNodesChange] = useNodesState<FNode>([]);
  const [edges, setEdges, onEdgesChange] = useEdgesState<FEdge>([]);
  const [meta, setMeta] = useState<Meta>({});
  const [ready, setReady] = useState(false);
  const rf = useReactFlow<FNode, FEdge>();
  const history = useRef<{ stack: Snapshot[]; index: number }>({ stack: [], index: -1 });
  const [, setHistTick] = useState(0);
  const fileRef = useRef<HTMLInputElement>(null);
  const wrapRef = useRef<HTMLDivElement>(null);
  const cid = useMemo(clientId, []);
  const nodesRef = useRef(nodes);
  nodesRef.current = nodes;
  const edgesRef = useRef(edges);
  edgesRef.current = edges;
  const metaRef = useRef(meta);
  metaRef.current = meta;

  const graph = useCallback((): Graph => ({ nodes: nodesRef.current, edges: edgesRef.current, meta: metaRef.current }), []);
  const current = useCallback((): Native => toNative(graph(), specs), [graph, specs]);

  const apply = useCallback(
    (g: Graph, fit: boolean) => {
      setNodes(g.nodes);
      setEdges(g.edges);
      setMeta(g.meta);
      if (fit) setTimeout(() => rf.fitView({ padding: 0.15, maxZoom: 1 }), 50);
    },
    [rf, setNodes, setEdges],
  );

  const load = useCallback(
    (wf: unknown, source: string) => {
      try {
        const n = parseWorkflow(wf, specs);
        const g = fromNative(n, specs);
        setRun((s) => ({ ...s, nodes: {}, running: [] }));
        apply(g, true);
        const unknown = [...new Set(n.nodes.filter((x) => !specs[x.type]).map((x) => x.type))];
        if (unknown.length) say(`Loaded ${source}; unknown node types: ${unknown.join(", ")}`, "error");
        else say(`Loaded ${source}`, "ok");
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
          apply(fromNative(parseWorkflow(saved, specs), specs), true);
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

  // History and persistence: a settled change (nothing being dragged) is
  // recorded after a short pause, which also merges keystrokes.
  const dragging = nodes.some((n) => n.dragging);
  useEffect(() => {
    if (!ready || dragging) return;
    const t = setTimeout(() => {
      const snap = snapshot(nodesRef.current, edgesRef.current, metaRef.current);
      const h = history.current;
      if (h.stack[h.index] !== snap) {
        h.stack = h.stack.slice(0, h.index + 1);
        h.stack.push(snap);
        if (h.stack.length > 200) h.stack.shift();
        h.index = h.stack.length - 1;
        setHistTick((x) => x + 1);
      }
      try {
        localStorage.setItem(storageKey, JSON.stringify(current()));
      } catch {
        /* storage full or disabled */
      }
    }, 250);
    return () => clearTimeout(t);
  }, [nodes, edges, meta, ready, dragging, current]);

  // Save at once when the page goes away, in case the timer above is pending.
  useEffect(() => {
    if (!ready) return;
    const save = () => {
      try {
        localStorage.setItem(storageKey, JSON.stringify(current()));
      } catch {
        /* storage full or disabled */
      }
    };
    window.addEventListener("pagehide", save);
    return () => window.removeEventListener("pagehide", save);
  }, [ready, current]);

  const undo = useCallback(() => {
    const h = history.current;
    // Record a change still waiting in the debounce first.
    const now = snapshot(nodesRef.current, edgesRef.current, metaRef.current);
    if (h.stack[h.index] !== now) {
      h.stack = h.stack.slice(0, h.index + 1);
      h.stack.push(now);
      h.index = h.stack.length - 1;
    }
    if (h.index <= 0) return;
    h.index--;
    apply(restore(h.stack[h.index]), false);
    setHistTick((x) => x + 1);
  }, [apply]);

  const redo = useCallback(() => {
    const h = history.current;
    if (h.index >= h.stack.length - 1) return;
    h.index++;
    apply(restore(h.stack[h.index]), false);
    setHistTick((x) => x + 1);
  }, [apply]);

  const addNode = useCallback(
    (type: string, pos?: { x: number; y: number }) => {
      const spec = specs[type];
      if (!spec) return;
      const taken = new Set(nodesRef.current.map((n) => n.id));
      const id = newId(type, taken);
      const values: Record<string, unknown> = {};
      const randomize: Record<string, boolean> = {};
      for (const inp of spec.inputs) {
        if (!inp.literal) continue;
        let v = defaultValue(inp);
        if (isSeed(inp)) {
          randomize[inp.name] = true;
          if (v === undefined || v === 0) v = randomSeed(inp);
        }
        if (v !== undefined) values[inp.name] = v;
      }
      if (!pos) {
        const r = wrapRef.current?.getBoundingClientRect();
        const c = r ? rf.screenToFlowPosition({ x: r.left + r.width / 2, y: r.top + r.height / 3 }) : { x: 0, y: 0 };
        const jitter = (nodesRef.current.length % 5) * 24;
        pos = { x: c.x - 120 + jitter, y: c.y + jitter };
      }
      const node: FNode = {
        id,
        type: "face0",
        position: pos,
        data: { nodeType: type, values, ...(Object.keys(randomize).length ? { ui: { randomize } } : {}) },
        selected: true,
      };
      setNodes((ns) => [...ns.map((n) => (n.selected ? { ...n, selected: false } : n)), node]);
    },
    [specs, rf, setNodes],
  );

  const portType = useCallback(
    (nodeId: string, handle: string | null | undefined, dir: "in" | "out"): string => {
      const n = nodesRef.current.find((x) => x.id === nodeId);
      const spec = n && specs[n.data.nodeType];
      if (!spec) return "*";
      if (dir === "out") return spec.outputs.find((o) => o.name === handle)?.type || "*";
      return spec.inputs.find((i) => i.name === handle)?.type || "*";
    },
    [specs],
  );

  const createsCycle = useCallback((source: string, target: string): boolean => {
    if (source === target) return true;
    const out = new Map<string, string[]>();
    for (const e of edgesRef.current) {
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
  }, []);

  const checkConnection = useCallback(
    (c: Connection | Edge): [boolean, string] => {
      if (!c.source || !c.target) return [false, ""];
      if (createsCycle(c.source, c.target)) return [false, "that link would make a cycle"];
      return assignable(portType(c.source, c.sourceHandle, "out"), portType(c.target, c.targetHandle, "in"));
    },
    [portType, createsCycle],
  );

  const isValidConnection: IsValidConnection<FEdge> = useCallback((c) => checkConnection(c)[0], [checkConnection]);

  const onConnect = useCallback(
    (c: Connection) => {
      const [ok, why] = checkConnection(c);
      if (!ok) {
        if (why) say(why, "error");
        return;
      }
      setEdges((es) =>
        addEdge(
          { ...c, id: edgeId(c.source, c.sourceHandle || "", c.target, c.targetHandle || "") },
          // An input takes one link: a new one replaces the old.
          es.filter((e) => !(e.target === c.target && e.targetHandle === c.targetHandle)),
        ),
      );
    },
    [checkConnection, setEdges],
  );

  const reconnected = useRef(true);
  const onReconnectStart = useCallback(() => {
    reconnected.current = false;
  }, []);
  const onReconnect = useCallback(
    (old: Edge, c: Connection) => {
      reconnected.current = true;
      if (!checkConnection(c)[0]) return;
      setEdges((es) => {
        const rest = es.filter((e) => e.id === old.id || !(e.target === c.target && e.targetHandle === c.targetHandle));
        return reconnectEdge(old, c, rest).map((e) =>
          e.id === old.id || !rest.includes(e) ? { ...e, id: edgeId(e.source, e.sourceHandle || "", e.target, e.targetHandle || "") } : e,
        );
      });
    },
    [checkConnection, setEdges],
  );
  const onReconnectEnd = useCallback(
    (_: unknown, edge: Edge) => {
      // A link dragged off its input and dropped on the canvas is removed.
      if (!reconnected.current) setEdges((es) => es.filter((e) => e.id !== edge.id));
      reconnected.current = true;
    },
    [setEdges],
  );

  useEffect(() => {
    const parents = new Map<string, string[]>();
    for (const e of edges) {
      if (!parents.has(e.target)) parents.set(e.target, []);
      parents.get(e.target)!.push(e.source);
    }
    setGraph((id) => parents.get(id) || []);
  }, [edges]);

  const setValue = useCallback(
    (nodeId: string, input: string, value: unknown) => {
      setNodes((ns) => ns.map((n) => (n.id === nodeId ? { ...n, data: { ...n.data, values: { ...n.data.values, [input]: value } } } : n)));
      const r = getRun().nodes[nodeId];
      if (r?.inputErrors?.[input]) {
        const rest = { ...r.inputErrors };
        delete rest[input];
        setRun((s) => ({ ...s, nodes: { ...s.nodes, [nodeId]: { ...r, inputErrors: rest } } }));
      }
    },
    [setNodes],
  );

  const editorAPI: EditorAPI = useMemo(() => {
    const linked = new Set(edges.map((e) => e.target + "\u0000" + (e.targetHandle || "")));
    return {
      specs,
      colors,
      linked,
      setValue,
      setTitle: (nodeId, title) =>
        setNodes((ns) =>
          ns.map((n) => {
            if (n.id !== nodeId) return n;
            const data = { ...n.data };
            if (title) data.title = title;
            else delete data.title;
            return { ...n, data };
          }),
        ),
      removeNode: (nodeId) => {
        setNodes((ns) => ns.filter((n) => n.id !== nodeId));
        setEdges((es) => es.filter((e) => e.source !== nodeId && e.target !== nodeId));
      },
      setRandomize: (nodeId, input, on) =>
        setNodes((ns) =>
          ns.map((n) => {
            if (n.id !== nodeId) return n;
            const ui = { ...(n.data.ui || {}) };
            ui.randomize = { ...((ui.randomize as Record<string, boolean>) || {}), [input]: on };
            return { ...n, data: { ...n.data, ui } };
          }),
        ),
      uploadTo: async (nodeId, input, file) => {
        try {
          const ref = await api.upload(file);
          setValue(nodeId, input, ref.subfolder ? `${ref.subfolder}/${ref.name}` : ref.name);
          setRun((s) => ({ ...s, uploads: s.uploads + 1 }));
          say(`Uploaded ${ref.name}`, "ok");
        } catch (e) {
          say(`Upload failed: ${(e as Error).message}`, "error");
        }
      },
    };
  }, [specs, colors, edges, setValue, setNodes, setEdges]);

  const queue = useCallback(async () => {
    const wf = current();
    clearForRun();
    say("Queueing…");
    const asked = getRun().message;
    try {
      const res = await api.queuePrompt(wf, cid);
      setRun((s) => ({ ...s, promptId: res.prompt_id }));
      // A fast run may have reported already over the websocket; keep that.
      if (getRun().message === asked) say(`Queued (${res.prompt_id.slice(0, 8)})`, "info");
      // Seeds marked "random after run" change now, ready for the next run.
      setNodes((ns) =>
        ns.map((n) => {
          const spec = specs[n.data.nodeType];
          const rnd = (n.data.ui?.randomize as Record<string, boolean>) || {};
          if (!spec || !Object.values(rnd).some(Boolean)) return n;
          const values = { ...n.data.values };
          for (const inp of spec.inputs) if (rnd[inp.name] && isSeed(inp)) values[inp.name] = randomSeed(inp);
          return { ...n, data: { ...n.data, values } };
        }),
      );
    } catch (e) {
      if (e instanceof HTTPError && e.body && typeof e.body === "object" && (e.body as { node_errors?: NodeErrors }).node_errors) {
        const ne = (e.body as { node_errors: NodeErrors }).node_errors;
        showNodeErrors(ne);
        const first = Object.entries(ne)[0];
        const firstMsg = first?.[1].errors?.[0];
        const count = Object.keys(ne).length;
        say(
          count
            ? `The workflow has errors on ${count} node${count > 1 ? "s" : ""}` +
                (firstMsg ? ` (${first[0]}${firstMsg.extra_info?.input_name ? "." + firstMsg.extra_info.input_name : ""}: ${firstMsg.message})` : "")
            : e.message,
          "error",
        );
        if (first) {
          const n = nodesRef.current.find((x) => x.id === first[0]);
          if (n) rf.fitView({ nodes: [{ id: n.id }], padding: 0.8, maxZoom: 1, duration: 300 });
        }
      } else {
        say(`Queue failed: ${(e as Error).message}`, "error");
      }
    }
  }, [current, cid, specs, setNodes, rf]);

  const save = useCallback(() => {
    const wf = current();
    const name = (wf.name || "workflow").replace(/[^A-Za-z0-9_.-]+/g, "_");
    download(name + ".json", JSON.stringify(wf, null, 2) + "\n");
  }, [current]);

  const loadFile = useCallback(
    async (f: File) => {
      const bytes = new Uint8Array(await f.arrayBuffer());
      if (isPNG(bytes)) {
        let text: Record<string, string>;
        try {
          text = await pngText(bytes);
        } catch (e) {
          say(`${f.name}: ${(e as Error).message}`, "error");
          return;
        }
        // face0 writes the native graph under "workflow"; ComfyUI its own
        // editor format there and the API prompt under "prompt".
        for (const k of ["workflow", "prompt"]) {
          if (text[k] === undefined) continue;
          try {
            parseWorkflow(text[k], specs);
          } catch {
            continue;
          }
          load(text[k], f.name);
          return;
        }
        say(`${f.name} carries no workflow`, "error");
        return;
      }
      load(new TextDecoder().decode(bytes), f.name);
    },
    [load, specs],
  );

  const onDrop = useCallback(
    (e: React.DragEvent) => {
      e.preventDefault();
      const type = e.dataTransfer.getData(dragMime);
      if (type) {
        addNode(type, rf.screenToFlowPosition({ x: e.clientX - 20, y: e.clientY - 14 }));
        return;
      }
      const f = e.dataTransfer.files?.[0];
      if (f) loadFile(f);
    },
    [addNode, rf, loadFile],
  );

  const copy = useCallback(() => {
    const sel = nodesRef.current.filter((n) => n.selected);
    if (!sel.length) return false;
    const ids = new Set(sel.map((n) => n.id));
    const clip = {
      nodes: sel.map((n) => ({ id: n.id, position: n.position, data: n.data })),
      edges: edgesRef.current.filter((e) => ids.has(e.source) && ids.has(e.target)).map((e) => [e.source, e.sourceHandle, e.target, e.targetHandle]),
    };
    localStorage.setItem(clipboardKey, JSON.stringify(clip));
    say(`Copied ${sel.length} node${sel.length > 1 ? "s" : ""}`);
    return true;
  }, []);

  const paste = useCallback(() => {
    let clip: { nodes: { id: string; position: { x: number; y: number }; data: FNode["data"] }[]; edges: string[][] };
    try {
      clip = JSON.parse(localStorage.getItem(clipboardKey) || "");
    } catch {
      return;
    }
    if (!clip?.nodes?.length) return;
    const taken = new Set(nodesRef.current.map((n) => n.id));
    const rename = new Map<string, string>();
    for (const n of clip.nodes) {
      const id = newId(n.data.nodeType, taken);
      taken.add(id);
      rename.set(n.id, id);
    }
    const added: FNode[] = clip.nodes.map((n) => ({
      id: rename.get(n.id)!,
      type: "face0",
      position: { x: n.position.x + 40, y: n.position.y + 40 },
      data: structuredClone(n.data),
      selected: true,
    }));
    const addedEdges: FEdge[] = clip.edges.map(([s, sh, t, th]) => {
      const src = rename.get(s)!;
      const dst = rename.get(t)!;
      return { id: edgeId(src, sh, dst, th), source: src, sourceHandle: sh, target: dst, targetHandle: th };
    });
    setNodes((ns) => [...ns.map((n) => (n.selected ? { ...n, selected: false } : n)), ...added]);
    setEdges((es) => [...es, ...addedEdges]);
    // The next paste lands a step further on.
    clip.nodes.forEach((n) => (n.position = { x: n.position.x + 40, y: n.position.y + 40 }));
    localStorage.setItem(clipboardKey, JSON.stringify(clip));
  }, [setNodes, setEdges]);

  // Keyboard: undo, redo, copy, paste, save, queue.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      const typing = !!t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
      const mod = e.ctrlKey || e.metaKey;
      if (!mod) return;
      const k = e.key.toLowerCase();
      if (k === "enter") {
        e.preventDefault();
        queue();
      } else if (k === "s") {
        e.preventDefault();
        save();
      } else if (!typing && k === "z" && !e.shiftKey) {
        e.preventDefault();
        undo();
      } else if (!typing && ((k === "z" && e.shiftKey) || k === "y")) {
        e.preventDefault();
        redo();
      } else if (!typing && k === "c") {
        if (copy()) e.preventDefault();
      } else if (!typing && k === "v") {
        e.preventDefault();
        paste();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [queue, save, undo, redo, copy, paste]);

  // Hooks for scripts and the end-to-end test.
  useEffect(() => {
    (window as unknown as { face0: unknown }).face0 = {
      workflow: () => current(),
      load: (wf: unknown) => load(wf, "a script"),
      queue,
      undo,
      redo,
      addNode,
      connect: (source: string, output: string, target: string, input: string) => {
        const c = { source, sourceHandle: output, target, targetHandle: input };
        const [ok, why] = checkConnection(c);
        if (ok) onConnect(c);
        return ok ? "" : why || "refused";
      },
      history: () => ({ index: history.current.index, length: history.current.stack.length }),
      /** settled: the graph as shown is recorded in the history and saved. */
      settled: () =>
        history.current.stack[history.current.index] === snapshot(nodesRef.current, edgesRef.current, metaRef.current) &&
        localStorage.getItem(storageKey) === JSON.stringify(current()),
    };
  }, [current, load, queue, undo, redo, addNode, checkConnection, onConnect]);

  const styledEdges = useMemo(
    () =>
      edges.map((e) => {
        const c = typeColor(colors, portType(e.source, e.sourceHandle, "out"));
        return e.style?.stroke === c ? e : { ...e, style: { ...e.style, stroke: c, strokeWidth: 2.5 } };
      }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [edges, colors, portType, nodes.length],
  );

  const h = history.current;
  const run = useRun((s) => s);

  return (
    <EditorContext.Provider value={editorAPI}>
      <div className="f0-app">
        <header className="f0-toolbar">
          <span className="f0-brand">face0</span>
          <input
            className="f0-name"
            value={meta.name || ""}
            placeholder="untitled workflow"
            onChange={(e) => setMeta((m) => ({ ...m, name: e.target.value || undefined }))}
          />
          <button id="queue" className="primary" onClick={queue} title="Queue the workflow (Ctrl+Enter)">
            Queue
          </button>
          <button id="interrupt" onClick={() => api.interrupt().catch((e) => say((e as Error).message, "error"))} title="Stop the running workflow">
            Stop
          </button>
          <span className="f0-queue" title="Prompts waiting or running">
            queue: {run.queueRemaining}
          </span>
          <span className="f0-sep" />
          <button id="undo" onClick={undo} disabled={h.index <= 0} title="Undo (Ctrl+Z)">
            ↶
          </button>
          <button id="redo" onClick={redo} disabled={h.index >= h.stack.length - 1} title="Redo (Ctrl+Shift+Z)">
            ↷
          </button>
          <span className="f0-sep" />
          <button id="save" onClick={save} title="Download the workflow as JSON (Ctrl+S)">
            Save
          </button>
          <button id="load" onClick={() => fileRef.current?.click()} title="Open a workflow .json or a generated .png (or drop one on the canvas)">
            Load
          </button>
          <input
            ref={fileRef}
            id="load-file"
            type="file"
            accept=".json,application/json,image/png"
            style={{ display: "none" }}
            onChange={(e) => {
              const f = e.target.files?.[0];
              if (f) loadFile(f);
              e.target.value = "";
            }}
          />
          <button
            id="default"
            onClick={() => api.defaultWorkflow().then((wf) => load(wf, "the default workflow"), (e) => say((e as Error).message, "error"))}
            title="Replace the graph with the default workflow"
          >
            Default
          </button>
          <button
            id="clear"
            onClick={() => {
              apply({ nodes: [], edges: [], meta: {} }, false);
              setRun((s) => ({ ...s, nodes: {} }));
            }}
            title="Remove every node"
          >
            Clear
          </button>
          <span className={"f0-message " + (run.message?.kind || "")} id="message">
            {run.message?.text}
          </span>
          <span className={"f0-conn " + (run.connected ? "on" : "off")} title={run.connected ? "connected to the server" : "not connected"} />
        </header>
        <div className="f0-main">
          <Palette specs={specs} onAdd={(t) => addNode(t)} />
          <div className="f0-canvas" ref={wrapRef} onDragOver={(e) => e.preventDefault()} onDrop={onDrop}>
            <ReactFlow<FNode, FEdge>
              nodes={nodes}
              edges={styledEdges}
              nodeTypes={nodeTypes}
              onNodesChange={onNodesChange}
              onEdgesChange={onEdgesChange}
              onConnect={onConnect}
              isValidConnection={isValidConnection}
              onReconnect={onReconnect}
              onReconnectStart={onReconnectStart}
              onReconnectEnd={onReconnectEnd}
              deleteKeyCode={["Backspace", "Delete"]}
              minZoom={0.1}
              maxZoom={2.5}
              connectionRadius={28}
              proOptions={{ hideAttribution: true }}
              colorMode="dark"
              fitView
            >
              <Background gap={24} />
              <Controls />
              <MiniMap pannable zoomable style={{ width: 150, height: 100 }} nodeColor={(n) => (run.running.includes(n.id) ? "#4caf50" : "#555")} />
            </ReactFlow>
          </div>
        </div>
      </div>
    </EditorContext.Provider>
  );
}

export function App() {
  const [specs, setSpecs] = useState<Record<string, NodeSpec> | null>(null);
  const [colors, setColors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let stop = false;
    setError(null);
    Promise.all([api.objectInfo(), api.types().catch(() => [])]).then(
      ([info, types]) => {
        if (stop) return;
        const c: Record<string, string> = {};
        for (const t of types) if (t.color) c[t.name] = t.color;
        setColors(c);
        setSpecs(buildSpecs(info));
      },
      (e) => !stop && setError((e as Error).message),
    );
    return () => {
      stop = true;
    };
  }, [attempt]);

  useEffect(() => connect(clientId()), []);

  // Re-read the node specs after each finished run, keeping the graph: model
  // choices change when a run writes a model.
  useEffect(() => {
    const reload = () => {
      api.objectInfo().then(
        (info) => setSpecs(buildSpecs(info)),
        () => {},
      );
    };
    window.addEventListener("face0:specs-stale", reload);
    return () => window.removeEventListener("face0:specs-stale", reload);
  }, []);

  if (error) {
    return (
      <div className="f0-fatal">
        <h2>Cannot reach the face0 server</h2>
        <p>{error}</p>
        <button onClick={() => setAttempt((a) => a + 1)}>Retry</button>
      </div>
    );
  }
  if (!specs) return <div className="f0-fatal">Loading nodes…</div>;
  return (
    <ReactFlowProvider>
      <Editor specs={specs} colors={colors} />
    </ReactFlowProvider>
  );
}
