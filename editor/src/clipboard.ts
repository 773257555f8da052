// Copy and paste of nodes, through localStorage so that it works across
// tabs: pasted nodes keep their layout, land at the mouse and never on top
// of other nodes (see Editor's addNodes).
import type { XYPosition } from "@xyflow/react";
import { useCallback } from "react";
import { edgeId, type FEdge, type FNode } from "./convert";
import * as G from "./graph";
import { say } from "./run";

const clipboardKey = "face0.editor.clipboard";

type Args = {
  nodesRef: { current: FNode[] };
  edgesRef: { current: FEdge[] };
  addNodes: (added: FNode[], extraEdges?: FEdge[]) => FNode[];
  at: () => XYPosition;
  hasPointer: () => boolean;
};

export function useClipboard({ nodesRef, edgesRef, addNodes, at, hasPointer }: Args) {
  const copy = useCallback(() => {
    const sel = nodesRef.current.filter((n) => n.selected);
    if (!sel.length) return false;
    const ids = new Set(sel.map((n) => n.id));
    const clip = {
      nodes: sel.map((n) => ({ id: n.id, type: n.type, position: n.position, data: n.data, width: n.width, height: n.height })),
      edges: edgesRef.current.filter((e) => ids.has(e.source) && ids.has(e.target)).map((e) => [e.source, e.sourceHandle, e.target, e.targetHandle]),
    };
    localStorage.setItem(clipboardKey, JSON.stringify(clip));
    say(`Copied ${sel.length} node${sel.length > 1 ? "s" : ""}`);
    return true;
  }, []);

  const paste = useCallback(() => {
    let clip: { nodes: (Pick<FNode, "id" | "type" | "position" | "data" | "width" | "height">)[]; edges: string[][] };
    try {
      clip = JSON.parse(localStorage.getItem(clipboardKey) || "");
    } catch {
      return;
    }
    if (!clip?.nodes?.length) return;
    const taken = new Set(nodesRef.current.map((n) => n.id));
    const rename = new Map<string, string>();
    for (const n of clip.nodes) {
      const id = G.newId(n.data.nodeType || n.type || "node", taken);
      taken.add(id);
      rename.set(n.id, id);
    }
    // The copied nodes keep their layout, their top-left corner at the mouse.
    const x0 = Math.min(...clip.nodes.map((n) => n.position.x));
    const y0 = Math.min(...clip.nodes.map((n) => n.position.y));
    const to = hasPointer() ? at() : { x: x0 + 40, y: y0 + 40 };
    const added: FNode[] = clip.nodes.map((n) => ({
      id: rename.get(n.id)!,
      type: n.type || "face0",
      position: { x: n.position.x - x0 + to.x, y: n.position.y - y0 + to.y },
      data: structuredClone(n.data),
      width: n.width,
      height: n.height,
    }));
    const addedEdges: FEdge[] = clip.edges.map(([s, sh, t, th]) => {
      const src = rename.get(s)!;
      const dst = rename.get(t)!;
      return { id: edgeId(src, sh, dst, th), source: src, sourceHandle: sh, target: dst, targetHandle: th };
    });
    addNodes(added, addedEdges);
  }, [addNodes, at]);

  return { copy, paste };
}
