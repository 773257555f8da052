import { createContext, useContext } from "react";
import type { NodeData } from "./convert";
import type { NodeSpec } from "./spec";

export type EditorAPI = {
  specs: Record<string, NodeSpec>;
  colors: Record<string, string>;
  /** linked inputs, as "nodeId\u0000input" */
  linked: Set<string>;
  setValue: (nodeId: string, input: string, value: unknown) => void;
  setTitle: (nodeId: string, title: string) => void;
  /** patch merges into a node's data (notes' text, groups' titles, ui) */
  patch: (nodeId: string, p: Partial<NodeData>) => void;
  removeNode: (nodeId: string) => void;
  /** setControl sets what a seed does after each queued run */
  setControl: (nodeId: string, input: string, control: string) => void;
  uploadTo: (nodeId: string, input: string, file: File) => Promise<void>;
  /** the node whose title is being edited, if any */
  renaming: string | null;
  setRenaming: (nodeId: string | null) => void;
  /** typeOf is the type flowing out of a socket (a reroute's follows its source) */
  typeOf: (nodeId: string, handle: string, dir: "in" | "out") => string;
};

export const EditorContext = createContext<EditorAPI | null>(null);

export function useEditor(): EditorAPI {
  const c = useContext(EditorContext);
  if (!c) throw new Error("EditorContext missing");
  return c;
}

const fallback = ["#e57373", "#ba68c8", "#4fc3f7", "#aed581", "#ffd54f", "#a1887f", "#4db6ac", "#f48fb1"];

/** typeColor gives a port type's colour: the server's, else a stable pick. */
export function typeColor(colors: Record<string, string>, t: string): string {
  const base = t.split(":")[0];
  if (colors[t]) return colors[t];
  if (colors[base]) return colors[base];
  if (base === "*") return "#cccccc";
  let h = 0;
  for (let i = 0; i < base.length; i++) h = (h * 31 + base.charCodeAt(i)) >>> 0;
  return fallback[h % fallback.length];
}

/** controlOf is a seed input's after-run action: the node's ui.control, or
 *  the older ui.randomize flag. */
export function controlOf(data: NodeData, input: string): string {
  const c = (data.ui?.control as Record<string, string> | undefined)?.[input];
  if (c) return c;
  const r = (data.ui?.randomize as Record<string, boolean> | undefined)?.[input];
  return r === undefined ? "fixed" : r ? "randomize" : "fixed";
}
