// Builds the test host page (not shipped) into one file; the browser test serves it.
import { resolve } from "node:path";
import { defineConfig } from "vite";
import { viteSingleFile } from "vite-plugin-singlefile";

export default defineConfig({
  root: resolve(__dirname, "test"),
  base: "./",
  plugins: [viteSingleFile({ removeViteModuleLoader: true })],
  build: {
    outDir: resolve(__dirname, "dist-test"),
    emptyOutDir: true,
    reportCompressedSize: false,
    rollupOptions: { input: resolve(__dirname, "test/host.html") },
  },
});
