// Adding nodes: where a new node goes, moved off the nodes already there,
// selected alone, with its inputs' defaults (a seed starts random).
import type { ReactFlowInstance, XYPosition } from "@xyflow/react";
import { type Dispatch, type RefObject, type SetStateAction, useCallback } from "react";
import type { FEdge, FNode, NodeData } from "./convert";
import * as G from "./graph";
import { defaultValue, isSeed, type NodeSpec } from "./spec";
import { randomSeed } from "./widgets";

type Args = {
  specs: Record<string, NodeSpec>;
  rf: ReactFlowInstance<FNode, FEdge>;
  nodesRef: { current: FNode[] };
  /** where the mouse last was over the canvas, in flow coordinates */
  pointer: { current: XYPosition | null };
  wrapRef: RefObject<HTMLDivElement | null>;
  setAll: (ns: FNode[]) => void;
  setEdges: Dispatch<SetStateAction<FEdge[]>>;
};

export function useAddNodes({ specs, rf, nodesRef, pointer, wrapRef, setAll, setEdges }: Args) {
  /** place moves new nodes off the nodes already there. */
  const place = useCallback(
    (added: FNode[]): FNode[] => {
      const obst = G.obstacles(nodesRef.current, specs);
      const off = G.freeOffset(
        added.filter((n) => n.type !== "group").map((n) => G.rectOf(n, specs)),
        obst,
      );
      return added.map((n) => ({ ...n, position: { x: n.position.x + off.x, y: n.position.y + off.y } }));
    },
    [specs],
  );

  /** at is where a new node goes: the mouse, else the middle of the view. */
  const at = useCallback((): XYPosition => {
    if (pointer.current) return { x: pointer.current.x - 20, y: pointer.current.y - 14 };
    const r = wrapRef.current?.getBoundingClientRect();
    const c = r ? rf.screenToFlowPosition({ x: r.left + r.width / 2, y: r.top + r.height / 3 }) : { x: 0, y: 0 };
    return { x: c.x - 120, y: c.y };
  }, [rf]);

  const addNodes = useCallback(
    (added: FNode[], extraEdges: FEdge[] = []) => {
      const placed = place(added.map(G.withDefaults)).map((n) => ({ ...n, selected: true }));
      setAll([...nodesRef.current.map((n) => (n.selected ? { ...n, selected: false } : n)), ...placed]);
      if (extraEdges.length) setEdges((es) => [...es, ...extraEdges]);
      return placed;
    },
    [place, setAll, setEdges],
  );

  const addNode = useCallback(
    (type: string, pos?: XYPosition): string | null => {
      const spec = specs[type];
      if (!spec) return null;
      const id = G.newId(type, new Set(nodesRef.current.map((n) => n.id)));
      const values: Record<string, unknown> = {};
      const control: Record<string, string> = {};
      for (const inp of spec.inputs) {
        if (!inp.literal) continue;
        let v = defaultValue(inp);
        if (isSeed(inp)) {
          control[inp.name] = "randomize";
          if (v === undefined || v === 0) v = randomSeed(inp);
        }
        if (v !== undefined) values[inp.name] = v;
      }
      const data: NodeData = { nodeType: type, values };
      if (Object.keys(control).length) data.ui = { control };
      addNodes([{ id, type: "face0", position: pos ?? at(), data }]);
      return id;
    },
    [specs, addNodes, at],
  );

  const addVirtual = useCallback(
    (kind: "note" | "group" | "reroute", pos?: XYPosition): string => {
      const id = G.newId(kind, new Set(nodesRef.current.map((n) => n.id)));
      const data: NodeData = { nodeType: "", values: {} };
      if (kind === "group") data.text = "Group";
      if (kind === "note") data.text = "";
      const n: FNode = { id, type: kind, position: pos ?? at(), data };
      if (kind === "note") {
        n.width = 240;
        n.height = 120;
      }
      addNodes([n]);
      return id;
    },
    [addNodes, at],
  );

  return { at, addNodes, addNode, addVirtual };
}
