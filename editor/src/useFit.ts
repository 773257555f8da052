// Fitting the graph into view once React Flow has measured its nodes.
import type { ReactFlowInstance } from "@xyflow/react";
import { useCallback, useEffect, useRef, useState } from "react";
import type { FEdge, FNode } from "./convert";

/**
 * useFit fits the whole graph into view once every node shown has been
 * measured: a loaded graph, or when a script asks. A fixed 50 ms delay fitted
 * too early on a slow machine, and moved the view under a click made as the
 * graph showed. pending() is true until the fit is done.
 */
export function useFit(nodes: FNode[], rf: ReactFlowInstance<FNode, FEdge>) {
  const pending = useRef(false);
  const [asked, setAsked] = useState(0);
  const fit = useCallback(() => {
    pending.current = true;
    setAsked((n) => n + 1);
  }, []);
  useEffect(() => {
    if (!pending.current) return;
    // Measuring changes the nodes, which runs this again.
    const measured = nodes.every((n) => n.hidden || rf.getInternalNode(n.id)?.measured.width);
    if (!measured) return;
    pending.current = false;
    rf.fitView({ padding: 0.15, maxZoom: 1 });
  }, [nodes, rf, asked]);
  // A node that is never measured (not shown at all) must not keep the
  // graph out of view for ever: fit with what is measured after a while.
  useEffect(() => {
    if (!asked) return;
    const t = setTimeout(() => {
      if (!pending.current) return;
      pending.current = false;
      rf.fitView({ padding: 0.15, maxZoom: 1 });
    }, 1500);
    return () => clearTimeout(t);
  }, [rf, asked]);
  const isPending = useCallback(() => pending.current, []);
  return { fit, pending: isPending };
}
