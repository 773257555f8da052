// window.face0: the editor's graph for scripts and the browser tests
// (workflow(), load(wf), queue(n), undo(), redo(), addNode(type), connect(),
// select(ids), selected(), history(), settled(), fit()).
import type { Connection, XYPosition } from "@xyflow/react";
import { useEffect } from "react";
import type { FNode, Native } from "./convert";

type Args = {
  current: () => Native;
  load: (wf: unknown, source: string) => boolean;
  queue: (n?: number) => Promise<void>;
  undo: () => void;
  redo: () => void;
  addNode: (type: string, pos?: XYPosition) => string | null;
  why: (c: Connection) => string;
  link: (c: Connection) => void;
  setAll: (ns: FNode[]) => void;
  nodesRef: { current: FNode[] };
  position: () => { index: number; length: number };
  settled: () => boolean;
  fit: () => void;
};

export function useScriptHooks(a: Args) {
  const { current, load, queue, undo, redo, addNode, why, link, setAll, nodesRef, position, settled, fit } = a;
  useEffect(() => {
    (window as unknown as { face0: unknown }).face0 = {
      workflow: () => current(),
      load: (wf: unknown) => load(wf, "a script"),
      queue: (n?: number) => queue(n ?? 1),
      undo,
      redo,
      addNode: (type: string, x?: number, y?: number) => addNode(type, x === undefined ? undefined : { x, y: y ?? 0 }),
      connect: (source: string, output: string, target: string, input: string) => {
        const c = { source, sourceHandle: output, target, targetHandle: input };
        const r = why(c);
        if (!r) link(c);
        return r;
      },
      select: (ids: string[]) => setAll(nodesRef.current.map((n) => ({ ...n, selected: ids.includes(n.id) }))),
      selected: () => nodesRef.current.filter((n) => n.selected).map((n) => n.id),
      history: position,
      settled,
      fit,
    };
  }, [current, load, queue, undo, redo, addNode, why, link, setAll, nodesRef, position, settled, fit]);
}
