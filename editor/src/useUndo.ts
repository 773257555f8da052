// Undo history and persistence: a settled change (nothing being dragged) is
// recorded after a short pause, which also merges keystrokes, and the graph
// is saved in localStorage so that a reload finds it.
import { useCallback, useEffect, useRef, useState } from "react";
import type { FEdge, FNode, Graph, Meta, Native } from "./convert";
import { restore, type Snapshot, snapshot } from "./graph";

export const storageKey = "face0.editor.workflow";
/** The workflow as last saved or loaded, to tell an unsaved graph. */
export const savedKey = "face0.editor.saved";

type Args = {
  nodes: FNode[];
  edges: FEdge[];
  meta: Meta;
  ready: boolean;
  refs: { nodes: { current: FNode[] }; edges: { current: FEdge[] }; meta: { current: Meta } };
  apply: (g: Graph, fit: boolean) => void;
  current: () => Native;
};

function persist(wf: Native) {
  try {
    localStorage.setItem(storageKey, JSON.stringify(wf));
  } catch {
    /* storage full or disabled */
  }
}

export function useUndo({ nodes, edges, meta, ready, refs, apply, current }: Args) {
  const history = useRef<{ stack: Snapshot[]; index: number }>({ stack: [], index: -1 });
  const [, setTick] = useState(0);
  const snap = useCallback(() => snapshot(refs.nodes.current, refs.edges.current, refs.meta.current), [refs]);

  const dragging = nodes.some((n) => n.dragging || n.resizing);
  useEffect(() => {
    if (!ready || dragging) return;
    const t = setTimeout(() => {
      const s = snap();
      const h = history.current;
      if (h.stack[h.index] !== s) {
        h.stack = h.stack.slice(0, h.index + 1);
        h.stack.push(s);
        if (h.stack.length > 200) h.stack.shift();
        h.index = h.stack.length - 1;
        setTick((x) => x + 1);
      }
      persist(current());
    }, 250);
    return () => clearTimeout(t);
  }, [nodes, edges, meta, ready, dragging, current, snap]);

  // Save at once when the page goes away, in case the timer above is pending.
  useEffect(() => {
    if (!ready) return;
    const save = () => persist(current());
    window.addEventListener("pagehide", save);
    return () => window.removeEventListener("pagehide", save);
  }, [ready, current]);

  const undo = useCallback(() => {
    const h = history.current;
    // Record a change still waiting in the debounce first.
    const now = snap();
    if (h.stack[h.index] !== now) {
      h.stack = h.stack.slice(0, h.index + 1);
      h.stack.push(now);
      h.index = h.stack.length - 1;
    }
    if (h.index <= 0) return;
    h.index--;
    apply(restore(h.stack[h.index]), false);
    setTick((x) => x + 1);
  }, [apply, snap]);

  const redo = useCallback(() => {
    const h = history.current;
    if (h.index >= h.stack.length - 1) return;
    h.index++;
    apply(restore(h.stack[h.index]), false);
    setTick((x) => x + 1);
  }, [apply]);

  /** settled: the graph as shown is recorded in the history and saved. */
  const settled = useCallback(
    () => history.current.stack[history.current.index] === snap() && localStorage.getItem(storageKey) === JSON.stringify(current()),
    [snap, current],
  );

  const h = history.current;
  return {
    undo,
    redo,
    settled,
    canUndo: h.index > 0,
    canRedo: h.index < h.stack.length - 1,
    position: () => ({ index: history.current.index, length: history.current.stack.length }),
  };
}

/** markSaved records wf as the saved state; unsaved compares against it. */
export function markSaved(wf: Native) {
  try {
    localStorage.setItem(savedKey, JSON.stringify(wf));
  } catch {
    /* storage full or disabled */
  }
}

export function unsaved(wf: Native): boolean {
  if (!wf.nodes.length && !wf.ui) return false;
  return localStorage.getItem(savedKey) !== JSON.stringify(wf);
}
