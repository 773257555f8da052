// Talking to `face0 serve`: the ComfyUI-compatible HTTP routes and the
// face0 extras. A bearer token, when the page was opened with ?token=, rides on
// every request (header on fetches, query parameter on the websocket and on
// image URLs, which cannot carry headers).

export type JSONSchema = {
  type?: string | string[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  multipleOf?: number;
  enum?: unknown[];
  maxLength?: number;
  description?: string;
  title?: string;
  "x-face0-widget"?: string;
  "x-face0-step"?: number;
  "x-face0-multiline"?: boolean;
  "x-face0-randomize"?: boolean;
  [k: string]: unknown;
};

/** An input as /object_info gives it: [TYPE or [choices], options]. */
export type InputDecl = [string | string[], Record<string, unknown>?];

export type NodeClass = {
  name?: string;
  display_name?: string;
  description?: string;
  category?: string;
  output_node?: boolean;
  input?: {
    required?: Record<string, InputDecl>;
    optional?: Record<string, InputDecl>;
    hidden?: Record<string, unknown>;
  };
  input_order?: { required?: string[]; optional?: string[] };
  output?: (string | string[])[];
  output_name?: string[];
  output_is_list?: boolean[];
  face0_schema?: { properties?: Record<string, JSONSchema>; required?: string[] };
  /** every port's full type, parameter included */
  face0_types?: { inputs?: Record<string, string>; outputs?: Record<string, string> };
};

export type ObjectInfo = Record<string, NodeClass>;

export type TypeInfo = { name: string; description?: string; color?: string };

export type NodeErrors = Record<
  string,
  {
    errors?: { type?: string; message?: string; details?: string; extra_info?: { input_name?: string } }[];
    class_type?: string;
  }
>;

export type ImageRef = { filename: string; subfolder?: string; type?: string };

/** A queue or history item: [number, prompt_id, prompt, extra_data, outputs_to_execute]. */
export type QueueItem = [number, string, unknown, Record<string, unknown>, string[]];

export type HistoryEntry = {
  prompt: QueueItem;
  outputs: Record<string, { images?: ImageRef[] } & Record<string, unknown>>;
  status?: { status_str?: string; completed?: boolean; messages?: [string, Record<string, unknown>][] };
};
export type UploadRef = { name: string; subfolder?: string; type?: string };

const params = new URLSearchParams(window.location.search);
export const token = params.get("token") || "";

/** base is the folder the editor was served from, so that a server mounted
 *  under a path prefix works too. */
function base(): string {
  const p = window.location.pathname;
  return p.endsWith("/") ? p : p.slice(0, p.lastIndexOf("/") + 1);
}

export function apiURL(path: string): string {
  return base() + path.replace(/^\//, "");
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const h: Record<string, string> = { ...(extra || {}) };
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

export class HTTPError extends Error {
  status: number;
  body: unknown;
  constructor(status: number, message: string, body: unknown) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function request<T>(method: string, path: string, body?: BodyInit, contentType?: string): Promise<T> {
  const res = await fetch(apiURL(path), {
    method,
    body,
    headers: headers(contentType ? { "Content-Type": contentType } : undefined),
  });
  const text = await res.text();
  let data: unknown = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    let msg = `${method} ${path}: ${res.status} ${res.statusText}`;
    if (data && typeof data === "object") {
      const e = (data as { error?: unknown }).error;
      if (typeof e === "string") msg = e;
      else if (e && typeof e === "object" && typeof (e as { message?: unknown }).message === "string")
        msg = (e as { message: string }).message;
    } else if (typeof data === "string" && data.trim()) {
      msg = data.trim();
    }
    throw new HTTPError(res.status, msg, data);
  }
  return data as T;
}

export const api = {
  /** objectInfo reads the node specs; fresh asks the server to ask its
   *  plugins again first (new files in the input or models folder). */
  objectInfo: (fresh = false) => request<ObjectInfo>("GET", fresh ? "object_info?refresh=1" : "object_info"),
  async types(): Promise<TypeInfo[]> {
    const data = await request<unknown>("GET", "face0/types");
    // Accept a list of {name, color} or a map name -> colour / info.
    const list = Array.isArray(data)
      ? data
      : data && typeof data === "object" && Array.isArray((data as { types?: unknown }).types)
        ? (data as { types: unknown[] }).types
        : data && typeof data === "object"
          ? Object.entries(data as Record<string, unknown>).map(([name, v]) =>
              typeof v === "string" ? { name, color: v } : { name, ...(v as object) },
            )
          : [];
    return list.filter((t): t is TypeInfo => !!t && typeof (t as TypeInfo).name === "string");
  },
  defaultWorkflow: () => request<unknown>("GET", "face0/workflow/default"),
  queuePrompt: (prompt: unknown, clientId: string) =>
    request<{ prompt_id: string; number?: number }>(
      "POST",
      "prompt",
      JSON.stringify({ prompt, client_id: clientId }),
      "application/json",
    ),
  interrupt: (promptId?: string) => request<unknown>("POST", "interrupt", JSON.stringify(promptId ? { prompt_id: promptId } : {}), "application/json"),
  queue: () => request<{ queue_running?: QueueItem[]; queue_pending?: QueueItem[] }>("GET", "queue"),
  deleteQueued: (ids: string[]) => request<unknown>("POST", "queue", JSON.stringify({ delete: ids }), "application/json"),
  clearQueue: () => request<unknown>("POST", "queue", JSON.stringify({ clear: true }), "application/json"),
  toFront: (id: string) => request<unknown>("POST", "face0/queue/front", JSON.stringify({ prompt_id: id }), "application/json"),
  history: (maxItems: number) => request<Record<string, HistoryEntry>>("GET", `history?max_items=${maxItems}`),
  deleteHistory: (ids: string[]) => request<unknown>("POST", "history", JSON.stringify({ delete: ids }), "application/json"),
  clearHistory: () => request<unknown>("POST", "history", JSON.stringify({ clear: true }), "application/json"),
  async upload(file: File, overwrite = false): Promise<UploadRef> {
    const fd = new FormData();
    fd.append("image", file, file.name);
    fd.append("type", "input");
    if (overwrite) fd.append("overwrite", "true");
    return request<UploadRef>("POST", "upload/image", fd);
  },
};

export function viewURL(img: ImageRef): string {
  const q = new URLSearchParams({ filename: img.filename, subfolder: img.subfolder || "", type: img.type || "output" });
  if (token) q.set("token", token);
  return apiURL("view") + "?" + q.toString();
}

export function wsURL(clientId: string): string {
  const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
  const q = new URLSearchParams({ clientId });
  if (token) q.set("token", token);
  return `${proto}//${window.location.host}${apiURL("ws")}?${q.toString()}`;
}
