// Workflows in and out as files: Save downloads the native JSON; Load and
// drops read native, ComfyUI editor and ComfyUI API JSON, and PNGs that carry
// a workflow; a node dragged from the palette is dropped onto the canvas.
import type { ReactFlowInstance, XYPosition } from "@xyflow/react";
import { useCallback } from "react";
import { type FEdge, type FNode, type Native, readWorkflow } from "./convert";
import { dragMime } from "./Palette";
import { isPNG, pngText } from "./png";
import { say } from "./run";
import type { NodeSpec } from "./spec";
import { markSaved } from "./useUndo";

type Args = {
  specs: Record<string, NodeSpec>;
  rf: ReactFlowInstance<FNode, FEdge>;
  current: () => Native;
  load: (wf: unknown, source: string) => boolean;
  discard: (what: string, then: () => void) => void;
  addNode: (type: string, pos?: XYPosition) => string | null;
};

function download(name: string, text: string) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export function useFiles({ specs, rf, current, load, discard, addNode }: Args) {
  const save = useCallback(() => {
    const wf = current();
    const name = (wf.name || "workflow").replace(/[^A-Za-z0-9_.-]+/g, "_");
    download(name + ".json", JSON.stringify(wf, null, 2) + "\n");
    markSaved(wf);
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
            readWorkflow(text[k], specs);
          } catch {
            continue;
          }
          discard("Open " + f.name, () => load(text[k], f.name));
          return;
        }
        say(`${f.name} carries no workflow`, "error");
        return;
      }
      if (isUTF16(bytes)) {
        say(`Cannot load ${f.name}: it is UTF-16 text; save it as UTF-8`, "error");
        return;
      }
      discard("Open " + f.name, () => load(new TextDecoder().decode(bytes), f.name));
    },
    [load, specs, discard],
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

  return { save, loadFile, onDrop };
}

/** isUTF16 tells UTF-16 text (as some Windows editors save it), which JSON
 *  readers take for garbage: a byte-order mark, or ASCII with every other
 *  byte zero (the rule of engine/workflow's checkEncoding). */
function isUTF16(b: Uint8Array): boolean {
  if (b.length >= 2 && ((b[0] === 0xff && b[1] === 0xfe) || (b[0] === 0xfe && b[1] === 0xff))) return true;
  if (b.length < 4) return false;
  return (b[0] !== 0 && b[1] === 0 && b[2] !== 0 && b[3] === 0) || (b[0] === 0 && b[1] !== 0 && b[2] === 0 && b[3] !== 0);
}
