/** clientId names this tab to the server (its websocket and its prompts). */
export function clientId(): string {
  let id = sessionStorage.getItem("face0.clientId");
  if (!id) {
    id = (crypto.randomUUID?.() || Math.random().toString(36).slice(2)) as string;
    sessionStorage.setItem("face0.clientId", id);
  }
  return id;
}
