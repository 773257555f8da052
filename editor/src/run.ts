// Execution state shown on the graph (progress, previews, results, errors),
// fed by the server's websocket. Kept apart from the graph itself so that it
// takes no part in undo and is never saved.
import { useSyncExternalStore } from "react";
import { type ImageRef, type NodeErrors, wsURL } from "./api";

export type NodeRun = {
  progress?: { value: number; max: number };
  images?: ImageRef[];
  preview?: string; // object URL of the latest preview frame
  error?: string; // node-level error text
  inputErrors?: Record<string, string>; // validation errors by input name
  cached?: boolean;
  done?: boolean;
};

export type RunState = {
  connected: boolean;
  /** nodes running now, in the order they started (branches run in parallel) */
  running: string[];
  promptId: string | null;
  queueRemaining: number;
  nodes: Record<string, NodeRun>;
  message: { text: string; kind: "info" | "error" | "ok" } | null;
  /** counts uploads, so that thumbnails of a replaced file reload */
  uploads: number;
};

let state: RunState = {
  connected: false,
  running: [],
  promptId: null,
  queueRemaining: 0,
  nodes: {},
  message: null,
  uploads: 0,
};
const listeners = new Set<() => void>();

export function getRun(): RunState {
  return state;
}

export function setRun(f: (s: RunState) => RunState) {
  state = f(state);
  listeners.forEach((l) => l());
}

function subscribe(l: () => void) {
  listeners.add(l);
  return () => listeners.delete(l);
}

export function useRun<T>(sel: (s: RunState) => T): T {
  return useSyncExternalStore(subscribe, () => sel(state));
}

const empty: NodeRun = {};
export function useNodeRun(id: string): NodeRun {
  return useRun((s) => s.nodes[id] || empty);
}

export function patchNode(id: string, p: Partial<NodeRun>) {
  setRun((s) => ({ ...s, nodes: { ...s.nodes, [id]: { ...(s.nodes[id] || {}), ...p } } }));
}

export function say(text: string, kind: "info" | "error" | "ok" = "info") {
  setRun((s) => ({ ...s, message: { text, kind } }));
}

/** clearErrors forgets validation and execution errors (before a new run). */
export function clearForRun() {
  setRun((s) => {
    const nodes: Record<string, NodeRun> = {};
    for (const [id, n] of Object.entries(s.nodes)) {
      // Keep the last images until the node produces new ones.
      nodes[id] = { images: n.images, preview: n.preview };
    }
    return { ...s, nodes, running: [] };
  });
}

export function showNodeErrors(errs: NodeErrors) {
  setRun((s) => {
    const nodes = { ...s.nodes };
    for (const [id, e] of Object.entries(errs)) {
      const inputErrors: Record<string, string> = {};
      const general: string[] = [];
      for (const er of e.errors || []) {
        // details often repeats the message with more context; show the message.
        const text = er.message || er.details || er.type || "invalid";
        const input = er.extra_info?.input_name;
        if (input) inputErrors[input] = inputErrors[input] ? inputErrors[input] + "; " + text : text;
        else general.push(text);
      }
      nodes[id] = { ...(nodes[id] || {}), inputErrors, error: general.join("\n") || undefined };
    }
    return { ...s, nodes };
  });
}

let parentsOf: (id: string) => string[] = () => [];

/** setGraph tells the run state how nodes depend on each other: a node that
 *  starts implies that the nodes it reads from have finished. */
export function setGraph(parents: (id: string) => string[]) {
  parentsOf = parents;
}

function ancestors(id: string): Set<string> {
  const out = new Set<string>();
  const stack = [...parentsOf(id)];
  while (stack.length) {
    const x = stack.pop()!;
    if (out.has(x)) continue;
    out.add(x);
    stack.push(...parentsOf(x));
  }
  return out;
}

function finish(nodes: Record<string, NodeRun>, ids: Iterable<string>) {
  for (const id of ids) nodes[id] = { ...(nodes[id] || {}), done: true, progress: undefined };
}

let socket: WebSocket | null = null;
let started = false;
let previewURLs: string[] = [];

/** connect keeps a websocket to the server open, reconnecting when it drops. */
export function connect(clientId: string) {
  if (started) return;
  started = true;
  let retry = 500;
  const open = () => {
    const ws = new WebSocket(wsURL(clientId));
    ws.binaryType = "arraybuffer";
    socket = ws;
    ws.onopen = () => {
      retry = 500;
      // Ask for previews that name their node, so parallel branches each
      // show their own (ComfyUI's PREVIEW_IMAGE_WITH_METADATA).
      ws.send(JSON.stringify({ type: "feature_flags", data: { supports_preview_metadata: true } }));
      setRun((s) => ({ ...s, connected: true }));
    };
    ws.onclose = () => {
      setRun((s) => ({ ...s, connected: false }));
      socket = null;
      setTimeout(open, retry);
      retry = Math.min(retry * 2, 8000);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        try {
          handle(JSON.parse(ev.data));
        } catch (e) {
          console.warn("bad websocket message", e);
        }
      } else {
        handleBinary(ev.data as ArrayBuffer);
      }
    };
  };
  open();
}

export function connected(): boolean {
  return !!socket && socket.readyState === WebSocket.OPEN;
}

type Msg = { type: string; data?: Record<string, unknown> };

const messageListeners = new Set<(m: Msg) => void>();

/** onMessage calls f with every websocket message (after the run state has
 *  taken it in); it returns the function that stops it. */
export function onMessage(f: (m: Msg) => void): () => void {
  messageListeners.add(f);
  return () => {
    messageListeners.delete(f);
  };
}

/** clearCached forgets the "cached" marks of nodes that changed. */
export function clearCached(ids: Iterable<string>) {
  let changed = false;
  const nodes = { ...state.nodes };
  for (const id of ids) {
    if (nodes[id]?.cached) {
      nodes[id] = { ...nodes[id], cached: false };
      changed = true;
    }
  }
  if (changed) setRun((s) => ({ ...s, nodes }));
}

/** The last messages received, for debugging and tests (window.face0Messages). */
const received: { type: string; node?: unknown }[] = [];
(window as unknown as { face0Messages: typeof received }).face0Messages = received;

function handle(m: Msg) {
  handleRun(m);
  messageListeners.forEach((f) => f(m));
}

function handleRun(m: Msg) {
  const d = (m.data || {}) as Record<string, unknown>;
  received.push({ type: m.type, node: d.node ?? d.node_id ?? d.nodes });
  if (received.length > 500) received.splice(0, received.length - 500);
  switch (m.type) {
    case "status": {
      const st = d.status as { exec_info?: { queue_remaining?: number } } | undefined;
      const q = st?.exec_info?.queue_remaining;
      if (typeof q === "number") setRun((s) => ({ ...s, queueRemaining: q }));
      break;
    }
    case "execution_start":
      setRun((s) => ({ ...s, promptId: (d.prompt_id as string) || s.promptId, running: [] }));
      say("Running…");
      break;
    case "execution_cached": {
      const ids = (d.nodes as string[]) || [];
      setRun((s) => {
        const nodes = { ...s.nodes };
        for (const id of ids) nodes[id] = { ...(nodes[id] || {}), cached: true, done: true, progress: undefined };
        return { ...s, nodes };
      });
      break;
    }
    case "executing": {
      const node = (d.node as string | null) ?? null;
      setRun((s) => {
        const nodes = { ...s.nodes };
        if (!node) {
          finish(nodes, s.running);
          return { ...s, nodes, running: [] };
        }
        const before = ancestors(node);
        const done = s.running.filter((r) => before.has(r));
        finish(nodes, done);
        nodes[node] = { ...(nodes[node] || {}), cached: false, done: false, error: undefined, progress: undefined };
        return { ...s, nodes, running: [...s.running.filter((r) => r !== node && !before.has(r)), node] };
      });
      break;
    }
    case "progress": {
      const node = (d.node as string) || getRun().running.at(-1);
      if (node) patchNode(node, { progress: { value: Number(d.value) || 0, max: Number(d.max) || 1 } });
      break;
    }
    case "executed": {
      const node = d.node as string;
      const out = (d.output || {}) as { images?: ImageRef[] };
      if (!node) break;
      setRun((s) => {
        const nodes = { ...s.nodes };
        finish(nodes, [node]);
        if (out.images) nodes[node] = { ...nodes[node], images: out.images, preview: undefined };
        return { ...s, nodes, running: s.running.filter((r) => r !== node) };
      });
      break;
    }
    case "execution_error": {
      const node = (d.node_id as string) || getRun().running.at(-1);
      const text = String(d.exception_message || "error");
      if (node) patchNode(node, { error: text, progress: undefined });
      setRun((s) => ({ ...s, running: [] }));
      say(`${node ? `Node ${node}: ` : ""}${text}`, "error");
      break;
    }
    case "execution_interrupted":
      setRun((s) => {
        const nodes = { ...s.nodes };
        for (const id of Object.keys(nodes)) nodes[id] = { ...nodes[id], progress: undefined };
        return { ...s, nodes, running: [] };
      });
      say("Interrupted", "info");
      break;
    case "execution_success":
      setRun((s) => {
        const nodes = { ...s.nodes };
        finish(nodes, s.running);
        return { ...s, nodes, running: [] };
      });
      say("Done", "ok");
      // A run can change what nodes offer (a Train node wrote a model):
      // the app re-reads /object_info.
      window.dispatchEvent(new Event("face0:specs-stale"));
      break;
  }
}

function handleBinary(buf: ArrayBuffer) {
  if (buf.byteLength < 8) return;
  const v = new DataView(buf);
  const event = v.getUint32(0);
  let node: string | undefined;
  let mime: string;
  let body: ArrayBuffer;
  if (event === 1) {
    // PREVIEW_IMAGE: type, image format (1 JPEG, 2 PNG), bytes. It names no
    // node: it belongs to the node that started last.
    mime = v.getUint32(4) === 2 ? "image/png" : "image/jpeg";
    body = buf.slice(8);
    node = getRun().running.at(-1);
  } else if (event === 4) {
    // PREVIEW_IMAGE_WITH_METADATA: type, metadata length, JSON metadata, bytes.
    const n = v.getUint32(4);
    try {
      const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, n))) as { node_id?: string; image_type?: string };
      node = meta.node_id;
      mime = meta.image_type || "image/png";
    } catch {
      return;
    }
    body = buf.slice(8 + n);
  } else {
    return;
  }
  received.push({ type: "preview", node });
  if (!node) return;
  const blob = new Blob([body], { type: mime });
  const url = URL.createObjectURL(blob);
  previewURLs.push(url);
  // Keep a few recent ones alive; older ones are released.
  if (previewURLs.length > 32) {
    const old = previewURLs.splice(0, previewURLs.length - 32);
    setTimeout(() => old.forEach((u) => URL.revokeObjectURL(u)), 1000);
  }
  patchNode(node, { preview: url });
}
