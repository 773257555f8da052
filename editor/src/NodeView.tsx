// One node on the canvas: title, outputs, inputs with their sockets and
// widgets, the run state (progress, errors) and the images it produced.
import { Handle, type NodeProps, Position } from "@xyflow/react";
import { memo, useState } from "react";
import { viewURL } from "./api";
import { typeColor, useEditor } from "./context";
import type { FNode } from "./convert";
import { useNodeRun, useRun } from "./run";
import { type InputSpec, isImageUpload, type OutputSpec } from "./spec";
import { Widget } from "./widgets";

function NodeViewImpl({ id, data, selected }: NodeProps<FNode>) {
  const ed = useEditor();
  const run = useNodeRun(id);
  const executing = useRun((s) => s.running.includes(id));
  const [editing, setEditing] = useState(false);
  const [dropping, setDropping] = useState(false);
  const spec = ed.specs[data.nodeType];

  const inputs: InputSpec[] = spec ? [...spec.inputs] : [];
  for (const name of data.extraInputs || []) {
    if (!inputs.some((i) => i.name === name)) {
      inputs.push({ name, type: "*", optional: true, schema: {}, literal: name in data.values });
    }
  }
  const outputs: OutputSpec[] = spec ? [...spec.outputs] : [];
  for (const name of data.extraOutputs || []) {
    if (!outputs.some((o) => o.name === name)) outputs.push({ name, type: "*" });
  }
  // Link-only inputs sit beside the outputs, ComfyUI style; literal ones get a
  // row with their widget (and a socket, for feeding them from a link).
  const sockets = inputs.filter((i) => !i.literal);
  const widgets = inputs.filter((i) => i.literal);
  const randomize = (data.ui?.randomize as Record<string, boolean> | undefined) || {};
  const title = data.title || spec?.displayName || data.nodeType;
  const images = run.images || [];
  const uploadInput = inputs.find((i) => i.name === "image" && data.nodeType === "LoadImage");

  const cls = ["f0-node"];
  if (selected) cls.push("selected");
  if (executing) cls.push("executing");
  if (run.error || (run.inputErrors && Object.keys(run.inputErrors).length)) cls.push("has-error");
  if (run.cached) cls.push("cached");
  if (!spec) cls.push("unknown");
  if (dropping) cls.push("dropping");

  return (
    <div
      className={cls.join(" ")}
      data-node-type={data.nodeType}
      onDragOver={(e) => {
        if (uploadInput && e.dataTransfer.types.includes("Files")) {
          e.preventDefault();
          e.stopPropagation();
          setDropping(true);
        }
      }}
      onDragLeave={() => setDropping(false)}
      onDrop={(e) => {
        setDropping(false);
        const f = e.dataTransfer.files?.[0];
        if (uploadInput && f && f.type.startsWith("image/")) {
          e.preventDefault();
          e.stopPropagation();
          ed.uploadTo(id, uploadInput.name, f);
        }
      }}
    >
      <div className="f0-title" title={spec?.description || data.nodeType}>
        {editing ? (
          <input
            className="nodrag"
            autoFocus
            defaultValue={title}
            onBlur={(e) => {
              setEditing(false);
              const t = e.target.value.trim();
              ed.setTitle(id, t === (spec?.displayName || data.nodeType) ? "" : t);
            }}
            onKeyDown={(e) => {
              if (e.key === "Enter" || e.key === "Escape") (e.target as HTMLInputElement).blur();
            }}
          />
        ) : (
          <span className="f0-title-text" onDoubleClick={() => setEditing(true)}>
            {title}
          </span>
        )}
        {run.cached && <span className="f0-badge" title="Result taken from the cache">cached</span>}
        {!spec && <span className="f0-badge bad" title="No installed plugin provides this node type">unknown type</span>}
        <button className="nodrag f0-close" title="Remove this node (Delete)" onClick={() => ed.removeNode(id)}>
          ×
        </button>
      </div>
      <div className="f0-progress" style={{ visibility: run.progress || executing ? "visible" : "hidden" }}>
        <div
          className={run.progress ? "" : "indeterminate"}
          style={{ width: run.progress ? `${Math.min(100, (100 * run.progress.value) / Math.max(1, run.progress.max))}%` : undefined }}
        />
      </div>
      {Array.from({ length: Math.max(sockets.length, outputs.length) }, (_, i) => {
        const inp = sockets[i];
        const o = outputs[i];
        const err = inp && run.inputErrors?.[inp.name];
        return (
          <div className={"f0-row sockets" + (err ? " bad" : "")} key={"s:" + i}>
            {inp && (
              <span className="f0-in" data-input={inp.name} title={[inp.type, inp.description].filter(Boolean).join(" — ")}>
                <Handle
                  type="target"
                  position={Position.Left}
                  id={inp.name}
                  className="f0-handle"
                  style={{ background: typeColor(ed.colors, inp.type) }}
                />
                <span className={"f0-label" + (inp.optional ? " opt" : "")}>{inp.name}</span>
              </span>
            )}
            {o && (
              <span className="f0-out" title={o.type}>
                <span className="f0-label">{o.name}</span>
                <Handle
                  type="source"
                  position={Position.Right}
                  id={o.name}
                  className="f0-handle"
                  style={{ background: typeColor(ed.colors, o.type) }}
                />
              </span>
            )}
            {err && <div className="f0-input-error">{err}</div>}
          </div>
        );
      })}
      {widgets.map((inp) => {
        const linked = ed.linked.has(id + "\u0000" + inp.name);
        const err = run.inputErrors?.[inp.name];
        const wide = !linked && (!!inp.schema["x-face0-multiline"] || isImageUpload(data.nodeType, inp));
        return (
          <div
            className={"f0-row in literal" + (err ? " bad" : "") + (wide ? " wide" : "")}
            key={"i:" + inp.name}
            data-input={inp.name}
            title={[inp.type, inp.description].filter(Boolean).join(" — ")}
          >
            <Handle
              type="target"
              position={Position.Left}
              id={inp.name}
              className="f0-handle small"
              style={{ background: typeColor(ed.colors, inp.type) }}
            />
            <span className={"f0-label" + (inp.optional ? " opt" : "")}>{inp.name}</span>
            {!linked && (
              <span className="f0-widget">
                <Widget nodeId={id} nodeType={data.nodeType} inp={inp} value={data.values[inp.name]} randomize={!!randomize[inp.name]} />
              </span>
            )}
            {linked && <span className="f0-linked">linked</span>}
            {err && <div className="f0-input-error">{err}</div>}
          </div>
        );
      })}
      {run.error && <div className="f0-error">{run.error}</div>}
      {run.preview && !images.length && (
        <div className="f0-images">
          <img src={run.preview} alt="preview" className="f0-preview" draggable={false} />
        </div>
      )}
      {images.length > 0 && (
        <div className="f0-images">
          {(run.preview && executing ? [] : images).map((im, i) => (
            <a key={i} href={viewURL(im)} target="_blank" rel="noreferrer" className="nodrag">
              <img className="f0-output" src={viewURL(im)} alt={im.filename} title={im.filename} draggable={false} />
            </a>
          ))}
          {run.preview && executing && <img src={run.preview} alt="preview" className="f0-preview" draggable={false} />}
        </div>
      )}
    </div>
  );
}

export const NodeView = memo(NodeViewImpl);
