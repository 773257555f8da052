// Widgets for literal inputs, chosen from each input's JSON Schema.
import { useEffect, useRef, useState } from "react";
import { viewURL } from "./api";
import { useEditor } from "./context";
import { useRun } from "./run";
import { baseType, defaultValue, type InputSpec, isImageUpload, isSeed } from "./spec";

type Props = {
  nodeId: string;
  nodeType: string;
  inp: InputSpec;
  value: unknown;
  /** a seed's after-run action: fixed, increment, decrement or randomize */
  control: string;
};

function numberStep(inp: InputSpec): number {
  const s = inp.schema;
  if (typeof s["x-face0-step"] === "number" && s["x-face0-step"] > 0) return s["x-face0-step"];
  if (typeof s.multipleOf === "number" && s.multipleOf > 0) return s.multipleOf;
  if (baseType(inp.type) === "INT") return 1;
  const span = typeof s.maximum === "number" && typeof s.minimum === "number" ? s.maximum - s.minimum : 0;
  return span > 0 && span <= 2 ? 0.01 : span > 0 && span <= 20 ? 0.1 : 0.01;
}

function clamp(inp: InputSpec, v: number): number {
  const s = inp.schema;
  if (typeof s.minimum === "number" && v < s.minimum) v = s.minimum;
  if (typeof s.maximum === "number" && v > s.maximum) v = s.maximum;
  if (baseType(inp.type) === "INT") v = Math.round(v);
  return v;
}

function wantsSlider(inp: InputSpec): boolean {
  const s = inp.schema;
  const w = s["x-face0-widget"];
  if (w === "slider") return true;
  if (w) return false;
  return (
    baseType(inp.type) === "FLOAT" &&
    typeof s.minimum === "number" &&
    typeof s.maximum === "number" &&
    s.maximum - s.minimum <= 10 &&
    /weight|strength|scale|denoise|amount|mix|alpha/i.test(inp.name)
  );
}

/** formatNum avoids 0.30000000000000004 in the display. */
function formatNum(v: number, step: number): string {
  const decimals = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step)) + 1);
  return String(Number(v.toFixed(decimals)));
}

/** nextSeed applies a seed's after-run action. */
export function nextSeed(inp: InputSpec, v: number, control: string): number {
  const min = typeof inp.schema.minimum === "number" ? inp.schema.minimum : 0;
  const max = Math.min(typeof inp.schema.maximum === "number" ? inp.schema.maximum : Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  switch (control) {
    case "randomize":
      return randomSeed(inp);
    case "increment":
      return v + 1 > max ? min : v + 1;
    case "decrement":
      return v - 1 < min ? max : v - 1;
  }
  return v;
}

export function randomSeed(inp: InputSpec): number {
  const min = typeof inp.schema.minimum === "number" ? inp.schema.minimum : 0;
  const max = Math.min(typeof inp.schema.maximum === "number" ? inp.schema.maximum : 2 ** 32 - 1, Number.MAX_SAFE_INTEGER);
  return Math.floor(min + Math.random() * (max - min + 1));
}

function NumberField(p: Props & { onChange: (v: unknown) => void }) {
  const { inp, value, onChange } = p;
  const step = numberStep(inp);
  const num = typeof value === "number" ? value : Number(value ?? defaultValue(inp) ?? 0);
  const [text, setText] = useState(formatNum(num, step));
  const focused = useRef(false);
  useEffect(() => {
    if (!focused.current) setText(formatNum(num, step));
  }, [num, step]);
  const commit = (t: string) => {
    const v = Number(t);
    if (t.trim() === "" || !Number.isFinite(v)) {
      setText(formatNum(num, step));
      return;
    }
    const c = clamp(inp, v);
    setText(formatNum(c, step));
    if (c !== num) onChange(c);
  };
  return (
    <input
      className="nodrag f0-num"
      type="number"
      name={inp.name}
      value={text}
      step={step}
      min={inp.schema.minimum}
      max={inp.schema.maximum}
      onFocus={() => (focused.current = true)}
      onChange={(e) => {
        setText(e.target.value);
        // Spinner clicks and arrow keys commit at once; typing commits on blur/Enter.
        const v = Number(e.target.value);
        if (e.target.value !== "" && Number.isFinite(v) && (e.nativeEvent as InputEvent).inputType === undefined) {
          onChange(clamp(inp, v));
        }
      }}
      onBlur={(e) => {
        focused.current = false;
        commit(e.target.value);
      }}
      onKeyDown={(e) => {
        if (e.key === "Enter") (e.target as HTMLInputElement).blur();
      }}
    />
  );
}

function Slider(p: Props & { onChange: (v: unknown) => void }) {
  const { inp, value, onChange } = p;
  const step = numberStep(inp);
  const num = typeof value === "number" ? value : Number(value ?? defaultValue(inp) ?? 0);
  const min = inp.schema.minimum ?? 0;
  const max = inp.schema.maximum ?? 1;
  return (
    <span className="f0-slider">
      <input
        className="nodrag"
        type="range"
        name={inp.name}
        min={min}
        max={max}
        step={step}
        value={num}
        onChange={(e) => onChange(clamp(inp, Number(e.target.value)))}
      />
      <NumberField {...p} />
    </span>
  );
}

/** useSettled gives v once it has stopped changing for ms: a thumbnail is
 *  not fetched for every letter typed. */
function useSettled<T>(v: T, ms: number): T {
  const [settled, setSettled] = useState(v);
  useEffect(() => {
    const t = setTimeout(() => setSettled(v), ms);
    return () => clearTimeout(t);
  }, [v, ms]);
  return settled;
}

function ImageUpload(p: Props & { onChange: (v: unknown) => void }) {
  const { nodeId, inp, value, onChange } = p;
  const ed = useEditor();
  const fileRef = useRef<HTMLInputElement>(null);
  const [busy, setBusy] = useState(false);
  const [broken, setBroken] = useState(false);
  // Bumped on every upload: the same name may now show another image.
  const version = useRun((s) => s.uploads);
  const name = typeof value === "string" ? value : "";
  // A choice from the list shows at once; typed text once typing pauses.
  const shown = useSettled(name, inp.choices?.includes(name) ? 0 : 400);
  useEffect(() => setBroken(false), [shown, version]);
  const upload = async (f: File | undefined) => {
    if (!f) return;
    setBusy(true);
    try {
      await ed.uploadTo(nodeId, inp.name, f);
    } finally {
      setBusy(false);
    }
  };
  const slash = shown.lastIndexOf("/");
  const ref = slash >= 0 ? { filename: shown.slice(slash + 1), subfolder: shown.slice(0, slash), type: "input" } : { filename: shown, type: "input" };
  return (
    <div className="f0-upload">
      <div className="f0-row-inline">
        {inp.choices ? (
          <select className="nodrag" name={inp.name} value={name} onChange={(e) => onChange(e.target.value)}>
            {!inp.choices.includes(name) && <option value={name}>{name || "(no image)"}</option>}
            {inp.choices.map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        ) : (
          <input className="nodrag" type="text" name={inp.name} value={name} onChange={(e) => onChange(e.target.value)} />
        )}
        <button className="nodrag f0-small" title="Upload an image to the input folder" onClick={() => fileRef.current?.click()} disabled={busy}>
          {busy ? "…" : "Upload"}
        </button>
        <input
          ref={fileRef}
          type="file"
          accept="image/png,image/jpeg,image/gif,image/webp"
          style={{ display: "none" }}
          onChange={(e) => {
            upload(e.target.files?.[0]);
            e.target.value = "";
          }}
        />
      </div>
      {shown && !broken && (
        <img className="f0-thumb" alt={shown} src={viewURL(ref) + (version ? `&v=${version}` : "")} onError={() => setBroken(true)} draggable={false} />
      )}
      {shown && broken && <div className="f0-hint">no such image in the input folder</div>}
    </div>
  );
}

const controls = ["fixed", "increment", "decrement", "randomize"];

export function Widget(p: Props) {
  const ed = useEditor();
  const { nodeId, nodeType, inp, value } = p;
  const onChange = (v: unknown) => ed.setValue(nodeId, inp.name, v);
  const shown = value === undefined ? defaultValue(inp) : value;
  if (isImageUpload(nodeType, inp)) return <ImageUpload {...p} value={shown} onChange={onChange} />;
  if (inp.choices) {
    const cur = shown === undefined ? "" : String(shown);
    return (
      <select className="nodrag" name={inp.name} value={cur} onChange={(e) => onChange(e.target.value)}>
        {!inp.choices.includes(cur) && <option value={cur}>{cur}</option>}
        {inp.choices.map((c) => (
          <option key={c} value={c}>
            {c}
          </option>
        ))}
      </select>
    );
  }
  switch (baseType(inp.type)) {
    case "INT":
    case "FLOAT":
      if (isSeed(inp)) {
        return (
          <span className="f0-seed">
            <NumberField {...p} value={shown} onChange={onChange} />
            <span className="f0-seed-controls">
              <select
                className="nodrag"
                name={inp.name + ".control"}
                value={p.control}
                title="What the seed does after each queued run (ComfyUI's control after generate)"
                onChange={(e) => ed.setControl(nodeId, inp.name, e.target.value)}
              >
                {controls.map((c) => (
                  <option key={c} value={c}>
                    {c === "fixed" ? "fixed" : c + " after run"}
                  </option>
                ))}
              </select>
              <button className="nodrag f0-small f0-dice" title="New random seed" onClick={() => onChange(randomSeed(inp))}>
                <svg viewBox="0 0 16 16" width="13" height="13" aria-label="random">
                  <rect x="1.5" y="1.5" width="13" height="13" rx="3" fill="none" stroke="currentColor" strokeWidth="1.5" />
                  <circle cx="5" cy="5" r="1.3" fill="currentColor" />
                  <circle cx="8" cy="8" r="1.3" fill="currentColor" />
                  <circle cx="11" cy="11" r="1.3" fill="currentColor" />
                </svg>
              </button>
            </span>
          </span>
        );
      }
      return wantsSlider(inp) ? <Slider {...p} value={shown} onChange={onChange} /> : <NumberField {...p} value={shown} onChange={onChange} />;
    case "BOOLEAN":
      return (
        <label className="nodrag f0-check">
          <input type="checkbox" name={inp.name} checked={!!shown} onChange={(e) => onChange(e.target.checked)} />
          {shown ? "true" : "false"}
        </label>
      );
    case "STRING":
    default:
      if (inp.schema["x-face0-multiline"]) {
        return (
          <textarea
            className="nodrag nowheel"
            name={inp.name}
            rows={4}
            value={shown === undefined ? "" : String(shown)}
            onChange={(e) => onChange(e.target.value)}
          />
        );
      }
      return (
        <input
          className="nodrag"
          type="text"
          name={inp.name}
          value={shown === undefined ? "" : String(shown)}
          maxLength={typeof inp.schema.maxLength === "number" && inp.schema.maxLength < 1e6 ? inp.schema.maxLength : undefined}
          onChange={(e) => onChange(e.target.value)}
        />
      );
  }
}
