// Node specs as the editor uses them, derived from /object_info, and the port
// type rules (the same as the engine's port.Assignable).
import type { InputDecl, JSONSchema, NodeClass, ObjectInfo } from "./api";

export type InputSpec = {
  name: string;
  /** port type ("IMAGE", "INT", "FACE_EMBEDDING:space"); "ENUM" for choices */
  type: string;
  optional: boolean;
  /** JSON Schema of its literal value, merged from face0_schema and the ComfyUI options */
  schema: JSONSchema;
  /** whether the value may be written inline (a widget) */
  literal: boolean;
  /** choices of an enum, if any */
  choices?: string[];
  description?: string;
};

export type OutputSpec = { name: string; type: string };

export type NodeSpec = {
  type: string;
  displayName: string;
  description: string;
  category: string;
  outputNode: boolean;
  inputs: InputSpec[];
  outputs: OutputSpec[];
};

const literalTypes = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "ENUM", "COMBO"]);

export function baseType(t: string): string {
  const i = t.indexOf(":");
  return i >= 0 ? t.slice(0, i) : t;
}

function param(t: string): string {
  const i = t.indexOf(":");
  return i >= 0 ? t.slice(i + 1) : "";
}

/** an puts "a" or "an" before a type name: an IMAGE, a STRING. */
export function an(t: string): string {
  return (/^[AEIOU]/i.test(t) ? "an " : "a ") + t;
}

/** assignable reports whether an output of type from may feed an input of
 *  type to, and if not, why. */
export function assignable(from: string, to: string): [boolean, string] {
  if (from === "*" || to === "*") return [true, ""];
  const fb = baseType(from);
  let tb = baseType(to);
  if (tb === "COMBO") tb = "ENUM";
  if (fb !== tb && !(fb === "INT" && tb === "FLOAT") && !(fb === "STRING" && tb === "ENUM")) {
    return [false, `${an(from)} output cannot feed ${an(to)} input`];
  }
  const fp = param(from);
  const tp = param(to);
  if (fp && tp && fp !== tp) {
    return [false, `${an(from)} output cannot feed ${an(to)} input: "${fp}" and "${tp}" are different spaces`];
  }
  return [true, ""];
}

function optsToSchema(type: string, opts: Record<string, unknown>): JSONSchema {
  const s: JSONSchema = {};
  if ("default" in opts) s.default = opts.default;
  if (typeof opts.min === "number") s.minimum = opts.min;
  if (typeof opts.max === "number") s.maximum = opts.max;
  if (typeof opts.step === "number") s["x-face0-step"] = opts.step;
  if (opts.multiline) s["x-face0-multiline"] = true;
  if (opts.display === "slider") s["x-face0-widget"] = "slider";
  if (opts.control_after_generate) s["x-face0-randomize"] = true;
  if (opts.image_upload) s["x-face0-widget"] = "image";
  if (typeof opts.tooltip === "string") s.description = opts.tooltip;
  if (type === "INT") s.type = "integer";
  else if (type === "FLOAT") s.type = "number";
  else if (type === "STRING") s.type = "string";
  else if (type === "BOOLEAN") s.type = "boolean";
  return s;
}

export function buildSpecs(info: ObjectInfo): Record<string, NodeSpec> {
  const out: Record<string, NodeSpec> = {};
  for (const [type, c] of Object.entries(info)) {
    out[type] = buildSpec(type, c);
  }
  return out;
}

export function buildSpec(type: string, c: NodeClass): NodeSpec {
  const props = c.face0_schema?.properties || {};
  const inputs: InputSpec[] = [];
  const add = (group: Record<string, InputDecl> | undefined, order: string[] | undefined, optional: boolean) => {
    if (!group) return;
    const names = order && order.length ? order.filter((n) => n in group) : Object.keys(group);
    for (const n of Object.keys(group)) if (!names.includes(n)) names.push(n);
    for (const name of names) {
      const decl = group[name];
      const rawType = Array.isArray(decl) ? decl[0] : decl;
      const opts = (Array.isArray(decl) && decl[1]) || {};
      let t: string;
      let choices: string[] | undefined;
      if (Array.isArray(rawType)) {
        t = "ENUM";
        choices = rawType.map(String);
      } else {
        t = String(rawType ?? "*");
        if (t === "COMBO") {
          t = "ENUM";
          if (Array.isArray(opts.options)) choices = (opts.options as unknown[]).map(String);
        }
      }
      const full = c.face0_types?.inputs?.[name];
      if (full && !choices) t = full;
      const schema: JSONSchema = { ...optsToSchema(t, opts), ...(props[name] || {}) };
      if (!choices && Array.isArray(schema.enum)) choices = schema.enum.map(String);
      if (choices && t !== "ENUM" && t === "STRING") t = "ENUM";
      inputs.push({
        name,
        type: t,
        optional,
        schema,
        literal: !opts.forceInput && (literalTypes.has(baseType(t)) || !!choices),
        choices,
        description: schema.description,
      });
    }
  };
  add(c.input?.required, c.input_order?.required, false);
  add(c.input?.optional, c.input_order?.optional, true);
  const outputs: OutputSpec[] = [];
  (c.output || []).forEach((o, i) => {
    let t = Array.isArray(o) ? "ENUM" : String(o);
    if (t === "UI") return; // editor-only results (SaveImage's images) are not ports
    const name = c.output_name?.[i] || t;
    t = c.face0_types?.outputs?.[name] || t;
    outputs.push({ name, type: t });
  });
  return {
    type,
    displayName: c.display_name || c.name || type,
    description: c.description || "",
    category: c.category || "other",
    outputNode: !!c.output_node,
    inputs,
    outputs,
  };
}

/** defaultValue gives an input's initial literal. */
export function defaultValue(inp: InputSpec): unknown {
  const s = inp.schema;
  if (s.default !== undefined) return s.default;
  if (inp.choices && inp.choices.length) return inp.choices[0];
  switch (baseType(inp.type)) {
    case "INT":
    case "FLOAT":
      return typeof s.minimum === "number" ? s.minimum : 0;
    case "BOOLEAN":
      return false;
    case "STRING":
      return "";
  }
  return undefined;
}

/** isImageUpload tells whether an input picks a file from the input folder. */
export function isImageUpload(nodeType: string, inp: InputSpec): boolean {
  const w = inp.schema["x-face0-widget"];
  if (w === "image" || w === "image-upload" || w === "upload") return true;
  return nodeType === "LoadImage" && inp.name === "image";
}

export function isSeed(inp: InputSpec): boolean {
  return !!inp.schema["x-face0-randomize"] || (baseType(inp.type) === "INT" && /^(noise_)?seed$/.test(inp.name));
}
