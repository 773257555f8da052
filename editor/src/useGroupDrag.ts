// Groups move the nodes inside them: the nodes wholly inside a group when
// its drag starts follow it.
import type { XYPosition } from "@xyflow/react";
import { useCallback, useRef } from "react";
import type { FNode } from "./convert";
import * as G from "./graph";
import type { NodeSpec } from "./spec";

type Args = {
  specs: Record<string, NodeSpec>;
  nodesRef: { current: FNode[] };
  setNodes: (f: (ns: FNode[]) => FNode[]) => void;
};

export function useGroupDrag({ specs, nodesRef, setNodes }: Args) {
  const groupDrag = useRef(new Map<string, { start: XYPosition; children: { id: string; start: XYPosition }[] }>());
  const onNodeDragStart = useCallback(
    (_: unknown, __: FNode, dragged: FNode[]) => {
      groupDrag.current.clear();
      const moving = new Set(dragged.map((n) => n.id));
      for (const g of dragged) {
        if (g.type !== "group") continue;
        const box = G.rectOf(g, specs);
        const children = nodesRef.current
          .filter((n) => !moving.has(n.id) && n.type !== "group" && G.inside(G.rectOf(n, specs), box))
          .map((n) => ({ id: n.id, start: n.position }));
        groupDrag.current.set(g.id, { start: g.position, children });
      }
    },
    [specs],
  );
  const onNodeDrag = useCallback(
    (_: unknown, __: FNode, dragged: FNode[]) => {
      if (!groupDrag.current.size) return;
      const moves = new Map<string, XYPosition>();
      for (const [gid, d] of groupDrag.current) {
        const g = dragged.find((n) => n.id === gid);
        if (!g) continue;
        const dx = g.position.x - d.start.x;
        const dy = g.position.y - d.start.y;
        for (const c of d.children) moves.set(c.id, { x: c.start.x + dx, y: c.start.y + dy });
      }
      setNodes((ns) => ns.map((n) => (moves.has(n.id) ? { ...n, position: moves.get(n.id)! } : n)));
    },
    [setNodes],
  );

  const onNodeDragStop = useCallback(() => groupDrag.current.clear(), []);
  return { onNodeDragStart, onNodeDrag, onNodeDragStop };
}
