// Queueing: the workflow is posted as many times as the batch count asks;
// between posts (and after the last) each seed does what its after-run
// control says. Validation errors show on the nodes and inputs.
import type { ReactFlowInstance } from "@xyflow/react";
import { useCallback } from "react";
import { api, HTTPError, type NodeErrors } from "./api";
import { controlOf } from "./context";
import type { FEdge, FNode, Native } from "./convert";
import { clientId } from "./ids";
import { clearForRun, getRun, say, setRun, showNodeErrors } from "./run";
import { isSeed, type NodeSpec } from "./spec";
import { nextSeed } from "./widgets";

type Args = {
  specs: Record<string, NodeSpec>;
  rf: ReactFlowInstance<FNode, FEdge>;
  nodesRef: { current: FNode[] };
  setAll: (ns: FNode[]) => void;
  current: () => Native;
  batch: number;
};

export function useQueue({ specs, rf, nodesRef, setAll, current, batch }: Args) {
  /** afterQueue applies each seed's after-run action. */
  const afterQueue = useCallback(() => {
    const next = nodesRef.current.map((n) => {
      const spec = specs[n.data.nodeType];
      if (!spec) return n;
      let values: Record<string, unknown> | null = null;
      for (const inp of spec.inputs) {
        const c = controlOf(n.data, inp.name);
        if (c === "fixed" || !isSeed(inp)) continue;
        values ??= { ...n.data.values };
        values[inp.name] = nextSeed(inp, Number(values[inp.name] ?? 0), c);
      }
      return values ? { ...n, data: { ...n.data, values } } : n;
    });
    setAll(next);
  }, [specs, setAll]);

  return useCallback(
    async (count = batch) => {
      clearForRun();
      say("Queueing…");
      const asked = getRun().message;
      for (let i = 0; i < count; i++) {
        const wf = current();
        try {
          const res = await api.queuePrompt(wf, clientId());
          setRun((s) => ({ ...s, promptId: s.promptId && i > 0 ? s.promptId : res.prompt_id }));
          // A fast run may have reported already over the websocket; keep that.
          if (getRun().message === asked || i > 0) say(count > 1 ? `Queued ${i + 1} of ${count}` : `Queued (${res.prompt_id.slice(0, 8)})`, "info");
          afterQueue();
        } catch (e) {
          if (e instanceof HTTPError && e.body && typeof e.body === "object" && (e.body as { node_errors?: NodeErrors }).node_errors) {
            const ne = (e.body as { node_errors: NodeErrors }).node_errors;
            showNodeErrors(ne);
            const first = Object.entries(ne)[0];
            const firstMsg = first?.[1].errors?.[0];
            const n = Object.keys(ne).length;
            say(
              n
                ? `The workflow has errors on ${n} node${n > 1 ? "s" : ""}` +
                    (firstMsg ? ` (${first[0]}${firstMsg.extra_info?.input_name ? "." + firstMsg.extra_info.input_name : ""}: ${firstMsg.message})` : "")
                : e.message,
              "error",
            );
            const node = first && nodesRef.current.find((x) => x.id === first[0]);
            if (node) rf.fitView({ nodes: [{ id: node.id }], padding: 0.8, maxZoom: 1, duration: 300 });
          } else {
            say(`Queue failed: ${(e as Error).message}`, "error");
          }
          return;
        }
      }
    },
    [batch, current, afterQueue, rf],
  );

}
