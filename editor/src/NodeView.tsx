// One workflow node on the canvas: title, outputs, inputs with their sockets
// and widgets, the run state (progress, errors) and the images it produced.
// Muted and bypassed nodes are drawn faded; a node of a type this server
// lacks shows the sockets its file named.
import { Handle, NodeResizeControl, type NodeProps, Position, ResizeControlVariant } from "@xyflow/react";
import { memo, useState } from "react";
import { viewURL } from "./api";
import { controlOf, typeColor, useEditor } from "./context";
import type { FNode } from "./convert";
import { useNodeRun, useRun } from "./run";
import { type InputSpec, isImageUpload, isSeed, type OutputSpec } from "./spec";
import { Widget } from "./widgets";

type ComfySockets = { inputs?: { name: string; type: string }[]; outputs?: { name: string; type: string }[] };

/** pickUp lets a link be taken off an input by its dot, as in ComfyUI: the
 *  press is handed to the link's own end, so the link follows the mouse
 *  from its output and can be dropped on another input (or on the canvas,
 *  which removes it). */
function pickUp(e: React.MouseEvent, nodeId: string, input: string) {
  if (e.button !== 0) return;
  const edge = document.querySelector(`.react-flow__edge[data-id$="->${CSS.escape(nodeId)}:${CSS.escape(input)}"]`);
  const end = edge?.querySelector("circle.react-flow__edgeupdater-target");
  if (!end) return;
  e.preventDefault();
  e.stopPropagation();
  end.dispatchEvent(new MouseEvent("mousedown", { bubbles: true, cancelable: true, clientX: e.clientX, clientY: e.clientY, button: 0, buttons: 1, view: window }));
}

function NodeViewImpl({ id, data, selected }: NodeProps<FNode>) {
  const ed = useEditor();
  const run = useNodeRun(id);
  const executing = useRun((s) => s.running.includes(id));
  const [dropping, setDropping] = useState(false);
  const spec = ed.specs[data.nodeType];
  const comfy = (data.ui?.comfy as ComfySockets | undefined) || {};
  const collapsed = !!data.ui?.collapsed;
  const editing = ed.renaming === id;

  const inputs: InputSpec[] = spec ? [...spec.inputs] : [];
  for (const s of comfy.inputs || []) {
    if (!inputs.some((i) => i.name === s.name)) inputs.push({ name: s.name, type: s.type || "*", optional: true, schema: {}, literal: false });
  }
  for (const name of data.extraInputs || []) {
    if (!inputs.some((i) => i.name === name)) {
      inputs.push({ name, type: "*", optional: true, schema: {}, literal: name in data.values });
    }
  }
  const outputs: OutputSpec[] = spec ? [...spec.outputs] : [];
  for (const s of comfy.outputs || []) if (!outputs.some((o) => o.name === s.name)) outputs.push({ name: s.name, type: s.type || "*" });
  for (const name of data.extraOutputs || []) {
    if (!outputs.some((o) => o.name === name)) outputs.push({ name, type: "*" });
  }
  // Link-only inputs sit beside the outputs, ComfyUI style; literal ones get a
  // row with their widget (and a socket, for feeding them from a link).
  const sockets = inputs.filter((i) => !i.literal);
  const widgets = inputs.filter((i) => i.literal);
  const title = data.title || spec?.displayName || data.nodeType;
  const images = run.images || [];
  const uploadInput = inputs.find((i) => isImageUpload(data.nodeType, i));
  const isLinked = (name: string) => ed.linked.has(id + "\u0000" + name);

  const cls = ["f0-node"];
  if (selected) cls.push("selected");
  if (executing) cls.push("executing");
  if (run.error || (run.inputErrors && Object.keys(run.inputErrors).length)) cls.push("has-error");
  if (run.cached) cls.push("cached");
  if (!spec) cls.push("unknown");
  if (dropping) cls.push("dropping");
  if (data.mode) cls.push(data.mode);
  if (collapsed) cls.push("collapsed");
  const style: React.CSSProperties = {};
  if (data.ui?.bgcolor) style.background = data.ui.bgcolor as string;

  const inHandle = (inp: InputSpec, small: boolean) => (
    <Handle
      type="target"
      position={Position.Left}
      id={inp.name}
      className={"f0-handle" + (small ? " small" : "")}
      style={{ background: typeColor(ed.colors, inp.type) }}
      onMouseDownCapture={isLinked(inp.name) ? (e) => pickUp(e, id, inp.name) : undefined}
    />
  );
  const outHandle = (o: OutputSpec) => (
    <Handle type="source" position={Position.Right} id={o.name} className="f0-handle" style={{ background: typeColor(ed.colors, o.type) }} />
  );

  return (
    <div
      className={cls.join(" ")}
      style={style}
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
      {selected && !collapsed && (
        <NodeResizeControl variant={ResizeControlVariant.Line} position="right" resizeDirection="horizontal" minWidth={180} className="f0-resize" />
      )}
      <div className="f0-title" title={spec?.description || data.nodeType} style={data.ui?.color ? { background: data.ui.color as string } : undefined}>
        <button
          className="nodrag f0-collapse"
          title={collapsed ? "Expand" : "Collapse"}
          onClick={() => ed.patch(id, { ui: { ...(data.ui || {}), collapsed: collapsed ? undefined : true } })}
        >
          {collapsed ? "▸" : "▾"}
        </button>
        {editing ? (
          <input
            className="nodrag"
            autoFocus
            defaultValue={title}
            onBlur={(e) => {
              ed.setRenaming(null);
              const t = e.target.value.trim();
              ed.setTitle(id, t === (spec?.displayName || data.nodeType) ? "" : t);
            }}
            onKeyDown={(e) => {
              if (e.key === "Enter" || e.key === "Escape") (e.target as HTMLInputElement).blur();
            }}
          />
        ) : (
          <span className="f0-title-text" onDoubleClick={() => ed.setRenaming(id)}>
            {title}
          </span>
        )}
        {data.mode && <span className={"f0-badge mode " + data.mode}>{data.mode}</span>}
        {run.cached && <span className="f0-badge" title="Result taken from the cache">cached</span>}
        {!spec && (
          <span className="f0-badge bad" title="No installed plugin provides this node type; the workflow cannot run until it is removed, muted or its plugin installed">
            missing: {data.nodeType}
          </span>
        )}
        <button className="nodrag f0-close" title="Remove this node (Delete)" onClick={() => ed.removeNode(id)}>
          ×
        </button>
      </div>
      {collapsed ? (
        <div className="f0-collapsed-sockets">
          {inputs.map((i) => (
            <span key={"i:" + i.name}>{inHandle(i, false)}</span>
          ))}
          {outputs.map((o) => (
            <span key={"o:" + o.name}>{outHandle(o)}</span>
          ))}
        </div>
      ) : (
        <>
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
                    {inHandle(inp, false)}
                    <span className={"f0-label" + (inp.optional ? " opt" : "")}>{inp.name}</span>
                  </span>
                )}
                {o && (
                  <span className="f0-out" title={o.type}>
                    <span className="f0-label">{o.name}</span>
                    {outHandle(o)}
                  </span>
                )}
                {err && <div className="f0-input-error">{err}</div>}
              </div>
            );
          })}
          {widgets.map((inp) => {
            const linked = isLinked(inp.name);
            const err = run.inputErrors?.[inp.name];
            const wide = !linked && (!!inp.schema["x-face0-multiline"] || isImageUpload(data.nodeType, inp) || isSeed(inp));
            return (
              <div
                className={"f0-row in literal" + (err ? " bad" : "") + (wide ? " wide" : "")}
                key={"i:" + inp.name}
                data-input={inp.name}
                title={[inp.type, inp.description].filter(Boolean).join(" — ")}
              >
                {inHandle(inp, true)}
                <span className={"f0-label" + (inp.optional ? " opt" : "")}>{inp.name}</span>
                {!linked && (
                  <span className="f0-widget">
                    <Widget nodeId={id} nodeType={data.nodeType} inp={inp} value={data.values[inp.name]} control={controlOf(data, inp.name)} />
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
        </>
      )}
    </div>
  );
}

export const NodeView = memo(NodeViewImpl);
