// The app: reads the node specs from /object_info (again after runs and
// uploads, which change the choices nodes offer), keeps the websocket open,
// and shows the editor.
import { ReactFlowProvider } from "@xyflow/react";
import { useEffect, useState } from "react";
import { api } from "./api";
import { Editor } from "./Editor";
import { clientId } from "./ids";
import { connect } from "./run";
import { buildSpecs, type NodeSpec } from "./spec";

export function App() {
  const [specs, setSpecs] = useState<Record<string, NodeSpec> | null>(null);
  const [colors, setColors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let stop = false;
    setError(null);
    Promise.all([api.objectInfo(), api.types().catch(() => [])]).then(
      ([info, types]) => {
        if (stop) return;
        const c: Record<string, string> = {};
        for (const t of types) if (t.color) c[t.name] = t.color;
        setColors(c);
        setSpecs(buildSpecs(info));
      },
      (e) => !stop && setError((e as Error).message),
    );
    return () => {
      stop = true;
    };
  }, [attempt]);

  useEffect(() => connect(clientId()), []);

  // Re-read the node specs after each finished run and each upload, keeping
  // the graph: model choices change when a run writes a model, LoadImage's
  // when a file is uploaded.
  useEffect(() => {
    const reload = (fresh: boolean) => () => {
      api.objectInfo(fresh).then(
        (info) => setSpecs(buildSpecs(info)),
        () => {},
      );
    };
    const stale = reload(false);
    const asked = reload(true);
    window.addEventListener("face0:specs-stale", stale);
    window.addEventListener("face0:specs-refresh", asked);
    // Back from another window (a file manager, a terminal): files may
    // have been added to the input or models folder.
    window.addEventListener("focus", asked);
    return () => {
      window.removeEventListener("face0:specs-stale", stale);
      window.removeEventListener("face0:specs-refresh", asked);
      window.removeEventListener("focus", asked);
    };
  }, []);

  if (error) {
    return (
      <div className="f0-fatal">
        <h2>Cannot reach the face0 server</h2>
        <p>{error}</p>
        <button onClick={() => setAttempt((a) => a + 1)}>Retry</button>
      </div>
    );
  }
  if (!specs) return <div className="f0-fatal">Loading nodes…</div>;
  return (
    <ReactFlowProvider>
      <Editor specs={specs} colors={colors} />
    </ReactFlowProvider>
  );
}
