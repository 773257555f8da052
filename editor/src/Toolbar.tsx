// The bar above the canvas: queue (with a batch count), stop, the queue
// panel's toggle, undo and redo, save, load, default, clear.
import { useRef } from "react";
import { useRun } from "./run";

type Props = {
  name: string;
  onName: (name: string) => void;
  batch: number;
  onBatch: (n: number) => void;
  onQueue: () => void;
  onStop: () => void;
  panel: boolean;
  onPanel: () => void;
  palette: boolean;
  onPalette: () => void;
  canUndo: boolean;
  canRedo: boolean;
  onUndo: () => void;
  onRedo: () => void;
  onSave: () => void;
  onLoadFile: (f: File) => void;
  onDefault: () => void;
  onClear: () => void;
};

export function Toolbar(p: Props) {
  const fileRef = useRef<HTMLInputElement>(null);
  const run = useRun((s) => s);
  return (
    <header className="f0-toolbar">
      <button id="toggle-palette" className={"f0-small" + (p.palette ? " active" : "")} onClick={p.onPalette} title="Show or hide the node palette">
        ☰
      </button>
      <span className="f0-brand">face0</span>
      <input className="f0-name" value={p.name} placeholder="untitled workflow" onChange={(e) => p.onName(e.target.value)} />
      <button id="queue" className="primary" onClick={p.onQueue} title="Queue the workflow (Ctrl+Enter); the number beside it queues it that many times">
        Queue
      </button>
      <input
        id="batch-count"
        className="f0-batch"
        type="number"
        min={1}
        max={100}
        value={p.batch}
        title="Batch count: how many times Queue queues the workflow (seeds set to change do so between them)"
        onChange={(e) => p.onBatch(Math.max(1, Math.min(100, Math.round(Number(e.target.value) || 1))))}
      />
      <button id="interrupt" onClick={p.onStop} title="Stop the running workflow">
        Stop
      </button>
      <button id="toggle-queue" className={"f0-queue" + (p.panel ? " active" : "")} onClick={p.onPanel} title="Show the queue, the history and the gallery">
        queue: {run.queueRemaining}
      </button>
      <span className="f0-sep" />
      <button id="undo" onClick={p.onUndo} disabled={!p.canUndo} title="Undo (Ctrl+Z)">
        ↶
      </button>
      <button id="redo" onClick={p.onRedo} disabled={!p.canRedo} title="Redo (Ctrl+Shift+Z)">
        ↷
      </button>
      <span className="f0-sep" />
      <button id="save" onClick={p.onSave} title="Download the workflow as JSON (Ctrl+S)">
        Save
      </button>
      <button id="load" onClick={() => fileRef.current?.click()} title="Open a workflow .json (face0 or ComfyUI) or a generated .png (or drop one on the canvas)">
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
          if (f) p.onLoadFile(f);
          e.target.value = "";
        }}
      />
      <button id="default" onClick={p.onDefault} title="Replace the graph with the default workflow">
        Default
      </button>
      <button id="clear" onClick={p.onClear} title="Remove every node">
        Clear
      </button>
      <span className={"f0-message " + (run.message?.kind || "")} id="message">
        {run.message?.text}
      </span>
      <span className={"f0-conn " + (run.connected ? "on" : "off")} title={run.connected ? "connected to the server" : "not connected"} />
    </header>
  );
}
