// Builds player.html into one self-contained file inside the Python package.
import { resolve } from "node:path";
import { defineConfig } from "vite";
import { viteSingleFile } from "vite-plugin-singlefile";

export default defineConfig({
  root: import.meta.dirname,
  base: "./",
  plugins: [viteSingleFile({ removeViteModuleLoader: true })],
  build: {
    outDir: resolve(import.meta.dirname, "../server/videogen/assets"),
    emptyOutDir: false,
    reportCompressedSize: false,
    rollupOptions: { input: resolve(import.meta.dirname, "player.html") },
  },
});
