// The editor-only nodes: notes, groups (a frame that moves the nodes inside
// it) and reroute points (a link bent through a dot). They are saved in the
// workflow's ui and never run.
import { Handle, NodeResizer, type NodeProps, Position } from "@xyflow/react";
import { memo, useState } from "react";
import { typeColor, useEditor } from "./context";
import type { FNode } from "./convert";
import { hex6 } from "./graph";

function NoteViewImpl({ id, data, selected }: NodeProps<FNode>) {
  const ed = useEditor();
  const bg = data.ui?.bgcolor as string | undefined;
  return (
    <div className={"f0-note" + (selected ? " selected" : "")} style={bg ? { background: bg } : undefined}>
      <NodeResizer isVisible={selected} minWidth={140} minHeight={70} lineClassName="f0-resize-line" handleClassName="f0-resize-handle" />
      <div className="f0-note-title" style={data.ui?.color ? { background: data.ui.color as string } : undefined}>
        Note
        <button className="nodrag f0-close" title="Remove this note" onClick={() => ed.removeNode(id)}>
          ×
        </button>
      </div>
      <textarea
        className="nodrag nowheel"
        name="note"
        placeholder="Write a note…"
        value={data.text || ""}
        onChange={(e) => ed.patch(id, { text: e.target.value })}
      />
    </div>
  );
}

function GroupViewImpl({ id, data, selected }: NodeProps<FNode>) {
  const ed = useEditor();
  const [editing, setEditing] = useState(false);
  const color = hex6((data.ui?.color as string | undefined) || "#3f789e");
  const renaming = editing || ed.renaming === id;
  return (
    <div className={"f0-frame" + (selected ? " selected" : "")} style={{ borderColor: color, background: color + "22" }}>
      <NodeResizer isVisible={selected} minWidth={120} minHeight={80} lineClassName="f0-resize-line" handleClassName="f0-resize-handle" />
      <div className="f0-frame-title" style={{ background: color + "aa" }} onDoubleClick={() => setEditing(true)}>
        {renaming ? (
          <input
            className="nodrag"
            autoFocus
            defaultValue={data.text || ""}
            onBlur={(e) => {
              setEditing(false);
              ed.setRenaming(null);
              ed.patch(id, { text: e.target.value.trim() || "Group" });
            }}
            onKeyDown={(e) => {
              if (e.key === "Enter" || e.key === "Escape") (e.target as HTMLInputElement).blur();
            }}
          />
        ) : (
          <span>{data.text || "Group"}</span>
        )}
      </div>
    </div>
  );
}

function RerouteViewImpl({ id, selected }: NodeProps<FNode>) {
  const ed = useEditor();
  const c = typeColor(ed.colors, ed.typeOf(id, "out", "out"));
  return (
    <div className={"f0-reroute" + (selected ? " selected" : "")} style={{ background: c }} title="Reroute point">
      <Handle type="target" position={Position.Left} id="in" className="f0-reroute-handle" />
      <Handle type="source" position={Position.Right} id="out" className="f0-reroute-handle" />
    </div>
  );
}

export const NoteView = memo(NoteViewImpl);
export const GroupView = memo(GroupViewImpl);
export const RerouteView = memo(RerouteViewImpl);
