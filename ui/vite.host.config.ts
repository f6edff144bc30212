// Builds the test host page (not shipped) into one file; the browser test serves it.
import { resolve } from "node:path";
import { defineConfig } from "vite";
import { viteSingleFile } from "vite-plugin-singlefile";

export default defineConfig({
  root: resolve(import.meta.dirname, "test"),
  base: "./",
  plugins: [viteSingleFile({ removeViteModuleLoader: true })],
  build: {
    outDir: resolve(import.meta.dirname, "dist-test"),
    emptyOutDir: true,
    reportCompressedSize: false,
    rollupOptions: { input: resolve(import.meta.dirname, "test/host.html") },
  },
});
