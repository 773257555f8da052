// Reading the text chunks of a PNG in the browser: images that face0 (or
// ComfyUI) saves carry their workflow under the key "workflow" (and the API
// prompt under "prompt").

const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function isPNG(b: Uint8Array): boolean {
  return b.length >= 8 && signature.every((v, i) => b[i] === v);
}

async function inflate(data: Uint8Array): Promise<Uint8Array> {
  const ds = new DecompressionStream("deflate");
  const stream = new Blob([data as BlobPart]).stream().pipeThrough(ds);
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** pngText returns the tEXt, zTXt and iTXt chunks as key -> text. */
export async function pngText(b: Uint8Array): Promise<Record<string, string>> {
  if (!isPNG(b)) throw new Error("not a PNG image");
  const out: Record<string, string> = {};
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8");
  let p = 8;
  while (p + 8 <= b.length) {
    const len = view.getUint32(p);
    const type = String.fromCharCode(b[p + 4], b[p + 5], b[p + 6], b[p + 7]);
    const start = p + 8;
    const end = start + len;
    if (end > b.length) break; // truncated
    const data = b.subarray(start, end);
    p = end + 4; // skip CRC
    if (type === "IEND") break;
    const z = data.indexOf(0);
    if (z < 0) continue;
    const key = latin1.decode(data.subarray(0, z));
    try {
      if (type === "tEXt") {
        out[key] = utf8.decode(data.subarray(z + 1)); // face0 writes ASCII; ComfyUI may write UTF-8 here
      } else if (type === "zTXt") {
        out[key] = latin1.decode(await inflate(data.subarray(z + 2)));
      } else if (type === "iTXt") {
        const compressed = data[z + 1] === 1;
        let q = z + 3;
        const lang = data.indexOf(0, q);
        if (lang < 0) continue;
        const trans = data.indexOf(0, lang + 1);
        if (trans < 0) continue;
        q = trans + 1;
        const text = data.subarray(q);
        out[key] = utf8.decode(compressed ? await inflate(text) : text);
      }
    } catch {
      /* a broken chunk: skip it */
    }
  }
  return out;
}

/** workflowFromPNG returns the workflow text an image carries. */
export async function workflowFromPNG(b: Uint8Array): Promise<string> {
  const text = await pngText(b);
  const w = text["workflow"] ?? text["prompt"];
  if (w === undefined) throw new Error('this PNG carries no workflow (no "workflow" or "prompt" text chunk)');
  return w;
}
