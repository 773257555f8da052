// The queue and history panel and the gallery. The queue shows the running
// prompt (with its progress when this page queued it) and the pending ones
// (cancel one, move one to the front); the history lists past runs with
// thumbnails, newest first, from the server's history, which survives
// restarts; the gallery shows every image of that history, with a lightbox.
// Any past run's workflow loads back into the canvas.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { api, type HistoryEntry, type ImageRef, type QueueItem, viewURL } from "./api";
import { onMessage, say, useRun } from "./run";

const historyItems = 200;

export type Shot = { image: ImageRef; promptId: string; node: string; when?: number };

type Run = { id: string; entry: HistoryEntry; when?: number; images: Shot[] };

function startedAt(e: HistoryEntry): number | undefined {
  for (const [type, d] of e.status?.messages || []) {
    if (type === "execution_start" && typeof d?.timestamp === "number") return d.timestamp;
  }
  return undefined;
}

function imagesOf(id: string, e: HistoryEntry, when?: number): Shot[] {
  const out: Shot[] = [];
  for (const [node, o] of Object.entries(e.outputs || {})) {
    for (const im of o.images || []) if (im && typeof im.filename === "string") out.push({ image: im, promptId: id, node, when });
  }
  return out;
}

/** workflowOf is what a past run was queued with: a ComfyUI client's editor
 *  workflow when it sent one, else the prompt itself. */
export function workflowOf(item: QueueItem): unknown {
  const extra = item[3] as { extra_pnginfo?: { workflow?: unknown } } | undefined;
  return extra?.extra_pnginfo?.workflow ?? item[2];
}

function time(ms?: number): string {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function Thumb({ shot, onOpen }: { shot: Shot; onOpen: () => void }) {
  const [broken, setBroken] = useState(false);
  if (broken) return <span className="f0-thumb-gone" title={`${shot.image.filename} is no longer on the server`} />;
  return (
    <img
      className="f0-hist-thumb"
      src={viewURL(shot.image)}
      alt={shot.image.filename}
      title={shot.image.filename}
      loading="lazy"
      decoding="async"
      draggable={false}
      onError={() => setBroken(true)}
      onClick={onOpen}
    />
  );
}

export function Lightbox({ shots, index, onIndex, onClose, onLoad }: { shots: Shot[]; index: number; onIndex: (i: number) => void; onClose: () => void; onLoad: (promptId: string) => void }) {
  const s = shots[index];
  useEffect(() => {
    const key = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
      else if (e.key === "ArrowRight" || e.key === "ArrowDown") onIndex(Math.min(index + 1, shots.length - 1));
      else if (e.key === "ArrowLeft" || e.key === "ArrowUp") onIndex(Math.max(index - 1, 0));
      else return;
      e.preventDefault();
      e.stopPropagation();
    };
    window.addEventListener("keydown", key, true);
    return () => window.removeEventListener("keydown", key, true);
  }, [index, shots.length, onIndex, onClose]);
  if (!s) return null;
  return (
    <div className="f0-lightbox" onMouseDown={onClose}>
      <div className="f0-lightbox-body" onMouseDown={(e) => e.stopPropagation()}>
        <img className="f0-lightbox-img" src={viewURL(s.image)} alt={s.image.filename} />
        <div className="f0-lightbox-bar">
          <button className="f0-lb-prev" disabled={index === 0} onClick={() => onIndex(index - 1)} title="Previous (←)">
            ‹
          </button>
          <span className="f0-lightbox-caption">
            {index + 1} / {shots.length} · {s.image.filename} · {time(s.when)}
          </span>
          <button className="f0-lb-next" disabled={index === shots.length - 1} onClick={() => onIndex(index + 1)} title="Next (→)">
            ›
          </button>
          <a className="f0-lb-open" href={viewURL(s.image)} target="_blank" rel="noreferrer">
            open
          </a>
          <button className="f0-lb-load" onClick={() => onLoad(s.promptId)} title="Load the workflow that made this image">
            Load workflow
          </button>
          <button className="f0-lb-close" onClick={onClose} title="Close (Esc)">
            ×
          </button>
        </div>
      </div>
    </div>
  );
}

type Props = { onLoad: (wf: unknown, source: string) => void; onClose: () => void };

export function QueuePanel({ onLoad, onClose }: Props) {
  const [tab, setTab] = useState<"queue" | "gallery">("queue");
  const [running, setRunning] = useState<QueueItem[]>([]);
  const [pending, setPending] = useState<QueueItem[]>([]);
  const [runs, setRuns] = useState<Run[]>([]);
  const [light, setLight] = useState<{ shots: Shot[]; index: number } | null>(null);
  const myPrompt = useRun((s) => s.promptId);
  const runningNodes = useRun((s) => s.running);
  const nodeRuns = useRun((s) => s.nodes);

  const loadQueue = useCallback(async () => {
    try {
      const q = await api.queue();
      setRunning(q.queue_running || []);
      // Pending prompts in run order (by number, as the server runs them).
      setPending([...(q.queue_pending || [])].sort((a, b) => a[0] - b[0]));
    } catch (e) {
      say(`Cannot read the queue: ${(e as Error).message}`, "error");
    }
  }, []);
  const loadHistory = useCallback(async () => {
    try {
      const h = await api.history(historyItems);
      const list = Object.entries(h).map(([id, entry]) => {
        const when = startedAt(entry);
        return { id, entry, when, images: imagesOf(id, entry, when) };
      });
      list.reverse(); // newest first
      setRuns(list);
    } catch (e) {
      say(`Cannot read the history: ${(e as Error).message}`, "error");
    }
  }, []);

  // Refresh on what the server says: a status message when the queue
  // changes, the end of a run for the history. Bursts are merged.
  const timers = useRef<{ q?: number; h?: number }>({});
  useEffect(() => {
    loadQueue();
    loadHistory();
    const t = timers.current;
    const off = onMessage((m) => {
      const later = (k: "q" | "h", f: () => void) => {
        if (t[k]) return;
        t[k] = window.setTimeout(() => {
          t[k] = undefined;
          f();
        }, 120);
      };
      if (m.type === "status") {
        later("q", loadQueue);
        later("h", loadHistory);
      } else if (m.type === "execution_start") later("q", loadQueue);
      else if (m.type === "execution_success" || m.type === "execution_error" || m.type === "execution_interrupted" || (m.type === "executing" && !m.data?.node)) {
        later("h", loadHistory);
        later("q", loadQueue);
      }
    });
    return () => {
      off();
      clearTimeout(t.q);
      clearTimeout(t.h);
    };
  }, [loadQueue, loadHistory]);

  const gallery = useMemo(() => runs.flatMap((r) => r.images), [runs]);
  const loadRun = useCallback(
    (id: string) => {
      const r = runs.find((x) => x.id === id);
      if (!r) return say("That run is no longer in the history", "error");
      onLoad(workflowOf(r.entry.prompt), `the workflow of run ${id.slice(0, 8)}`);
      setLight(null);
    },
    [runs, onLoad],
  );
  const act = (p: Promise<unknown>, then: () => void) =>
    p.then(then, (e) => say((e as Error).message, "error"));

  const progress = (id: string) => {
    if (id !== myPrompt) return null;
    const node = runningNodes.at(-1);
    const pr = node ? nodeRuns[node]?.progress : undefined;
    const done = Object.values(nodeRuns).filter((n) => n.done).length;
    return (
      <div className="f0-q-progress">
        <span>
          {node ? `running ${node}` : "starting"}
          {pr ? ` · ${pr.value}/${pr.max}` : ""} · {done} node{done === 1 ? "" : "s"} done
        </span>
        <div className="f0-progress">
          <div className={pr ? "" : "indeterminate"} style={{ width: pr ? `${(100 * pr.value) / Math.max(1, pr.max)}%` : undefined }} />
        </div>
      </div>
    );
  };

  return (
    <aside className="f0-side" id="queue-panel">
      <div className="f0-side-tabs">
        <button className={tab === "queue" ? "active" : ""} id="tab-queue" onClick={() => setTab("queue")}>
          Queue
        </button>
        <button className={tab === "gallery" ? "active" : ""} id="tab-gallery" onClick={() => setTab("gallery")}>
          Gallery ({gallery.length})
        </button>
        <span className="f0-sep-flex" />
        <button className="f0-small" onClick={onClose} title="Hide the panel">
          ×
        </button>
      </div>
      {tab === "queue" ? (
        <div className="f0-side-body">
          <div className="f0-side-head">
            Running and pending ({running.length + pending.length})
            {pending.length > 0 && (
              <button className="f0-small" id="clear-queue" onClick={() => act(api.clearQueue(), loadQueue)} title="Remove every pending prompt">
                Clear pending
              </button>
            )}
          </div>
          {running.map((it) => (
            <div className="f0-q-item running" key={it[1]} data-prompt={it[1]}>
              <div className="f0-q-line">
                <span className="f0-q-state run">running</span>
                <span className="f0-q-id">#{it[0]} {it[1].slice(0, 8)}</span>
                <button className="f0-small" onClick={() => act(api.interrupt(it[1]), loadQueue)} title="Stop this prompt">
                  Stop
                </button>
              </div>
              {progress(it[1])}
            </div>
          ))}
          {pending.map((it, i) => (
            <div className="f0-q-item pending" key={it[1]} data-prompt={it[1]}>
              <div className="f0-q-line">
                <span className="f0-q-state">pending</span>
                <span className="f0-q-id">#{it[0]} {it[1].slice(0, 8)}</span>
                <button className="f0-small f0-q-front" disabled={i === 0} onClick={() => act(api.toFront(it[1]), loadQueue)} title="Run this one next">
                  ⇡ front
                </button>
                <button className="f0-small f0-q-load" onClick={() => onLoad(workflowOf(it), `the workflow of prompt ${it[1].slice(0, 8)}`)} title="Load its workflow">
                  load
                </button>
                <button className="f0-small f0-q-cancel" onClick={() => act(api.deleteQueued([it[1]]), loadQueue)} title="Remove it from the queue">
                  ×
                </button>
              </div>
            </div>
          ))}
          {!running.length && !pending.length && <div className="f0-hint">Nothing queued.</div>}
          <div className="f0-side-head">
            History ({runs.length})
            {runs.length > 0 && (
              <button className="f0-small" id="clear-history" onClick={() => act(api.clearHistory(), loadHistory)} title="Forget every past run (the images stay in the output folder)">
                Clear
              </button>
            )}
          </div>
          {runs.map((r) => {
            const st = r.entry.status?.status_str || "?";
            return (
              <div className={"f0-q-item done " + st} key={r.id} data-prompt={r.id}>
                <div className="f0-q-line">
                  <span className={"f0-q-state " + st}>{st}</span>
                  <span className="f0-q-id" title={r.id}>
                    {r.id.slice(0, 8)} {time(r.when)}
                  </span>
                  <button className="f0-small f0-h-load" onClick={() => loadRun(r.id)} title="Load this run's workflow into the canvas">
                    load
                  </button>
                  <button className="f0-small f0-h-delete" onClick={() => act(api.deleteHistory([r.id]), loadHistory)} title="Remove from the history">
                    ×
                  </button>
                </div>
                {r.images.length > 0 && (
                  <div className="f0-q-thumbs">
                    {r.images.slice(0, 6).map((s, i) => (
                      <Thumb key={i} shot={s} onOpen={() => setLight({ shots: r.images, index: i })} />
                    ))}
                    {r.images.length > 6 && <span className="f0-hint">+{r.images.length - 6}</span>}
                  </div>
                )}
              </div>
            );
          })}
        </div>
      ) : (
        <div className="f0-side-body f0-gallery">
          {gallery.map((s, i) => (
            <Thumb key={s.promptId + ":" + i} shot={s} onOpen={() => setLight({ shots: gallery, index: i })} />
          ))}
          {!gallery.length && <div className="f0-hint">No images yet: queue a workflow with a SaveImage or PreviewImage node.</div>}
        </div>
      )}
      {light && <Lightbox shots={light.shots} index={light.index} onIndex={(index) => setLight({ ...light, index })} onClose={() => setLight(null)} onLoad={loadRun} />}
    </aside>
  );
}
