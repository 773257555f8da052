import { defineConfig } from "vite";

// The editor is served by `face0 serve` from the embedded dist/ folder, so
// asset URLs are relative (it may sit under a path prefix). In development,
// `npm run dev` proxies the API to a running `face0 serve` on :8188.
const api = "http://127.0.0.1:8188";

export default defineConfig({
  base: "./",
  oxc: { jsx: { runtime: "automatic" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 600,
    assetsInlineLimit: 0,
    rolldownOptions: {
      onwarn(warning, warn) {
        // React Flow's "use client" marks it for server components; meaningless here.
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
    },
  },
  server: {
    proxy: {
      "/object_info": api,
      "/face0": api,
      "/prompt": api,
      "/upload": api,
      "/view": api,
      "/interrupt": api,
      "/queue": api,
      "/history": api,
      "/api": api,
      "/ws": { target: api, ws: true },
    },
  },
});
