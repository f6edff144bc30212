#!/usr/bin/env node
/**
 * The player in a real browser: headless Chromium (Debian's /usr/bin/chromium, never a
 * downloaded one) driven by playwright-core, against a running videogen server.
 *
 *   node test/browser.mjs --server http://127.0.0.1:PORT/mcp --artifacts DIR [--measure N,N]
 *
 * It builds the test host page (test/host.html), serves it on loopback with /mcp proxied to the
 * server (so the page and the MCP endpoint share an origin), and checks:
 *   1. generate_video's running state shows and its elapsed time moves, refreshed by the view's
 *      own check_task calls (never generate_video);
 *   2. the finished state: the <video> loads the MP4 read through the server, reports the
 *      probed duration, plays, and a frame drawn from it onto a canvas is not blank; the
 *      download action reaches the host as ui/download-file; fullscreen reaches the host as
 *      ui/request-display-mode; the sandbox notice shows; the view stays within 500 px inline;
 *   3. a host that refuses the video read gets poster + download + path (dark theme);
 *   4. an unknown task id shows the server's message in words.
 * Screenshots go to DIR; a JSON report to DIR/browser-report.json and stdout. Exit 1 on failure.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { build } from "vite";

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    server: { type: "string" },
    artifacts: { type: "string", default: resolve(here, "../../tests/artifacts") },
    chromium: { type: "string", default: process.env.VIDEOGEN_CHROMIUM ?? "/usr/bin/chromium" },
    measure: { type: "string", default: "" },
  },
});
if (!values.server) throw new Error("--server http://127.0.0.1:PORT/mcp is required");
const target = new URL(values.server);
const artifacts = resolve(values.artifacts);
mkdirSync(artifacts, { recursive: true });

const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const report = { checks: [], measurements: [], failures: [] };
function check(name, ok, detail = {}) {
  report.checks.push({ name, ok: Boolean(ok), ...detail });
  if (!ok) report.failures.push(name);
}

async function buildHost() {
  const outDir = mkdtempSync(join(tmpdir(), "videogen-host-"));
  await build({
    configFile: resolve(here, "../vite.host.config.ts"),
    logLevel: "warn",
    build: { outDir, emptyOutDir: true },
  });
  const html = readFileSync(join(outDir, "host.html"), "utf-8");
  rmSync(outDir, { recursive: true, force: true });
  return html;
}

/** Serve the host page at / and pass /mcp through to the videogen server, streaming. */
function serveHost(html) {
  const server = createServer((req, res) => {
    if (req.url === "/" || req.url?.startsWith("/?")) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(html);
      return;
    }
    if (!req.url?.startsWith("/mcp")) {
      res.writeHead(404).end();
      return;
    }
    const headers = { ...req.headers, host: target.host };
    delete headers.origin; // the server checks Origin against its own loopback address
    const upstream = request(
      { hostname: target.hostname, port: target.port, path: target.pathname, method: req.method, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", (error) => res.writeHead(502).end(String(error)));
    req.pipe(upstream);
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

const view = (page) => page.frameLocator("#view");
const viewFrame = async (page) => (await page.$("#view")).contentFrame();

async function runView(page, options) {
  await page.evaluate((o) => {
    window.__run = window.videogenHost.run(o).catch((e) => {
      window.__runError = String(e);
    });
  }, options);
  await page.waitForFunction(() => document.querySelector("#view")?.contentWindow);
}

async function happyPath(page) {
  await runView(page, {
    tool: "generate_video",
    arguments: { prompt: "A red kite over green hills at dusk", wait_seconds: 0, new: true },
    csp: "blob",
  });
  const frame = view(page);
  await frame.locator("#running").waitFor({ state: "visible", timeout: 20000 });
  const first = await frame.locator("#run-elapsed").textContent();
  const statusText = await frame.locator("#run-status").textContent();
  const inner = await viewFrame(page);
  await inner.waitForFunction(
    (before) => document.querySelector("#run-elapsed").textContent !== before ||
      document.querySelector("#running").hidden,
    first,
    { timeout: 10000 },
  );
  const second = await inner.evaluate(() => document.querySelector("#run-elapsed").textContent);
  check("running state shows status, mode, provider and a moving elapsed time", first !== second && statusText, {
    status: statusText,
    elapsed: [first, second],
    mode: await frame.locator("#run-mode").textContent(),
    provider: await frame.locator("#run-provider").textContent(),
  });
  await page.locator("#view").screenshot({ path: join(artifacts, "player-running.png") });

  await frame.locator("#done").waitFor({ state: "visible", timeout: 60000 });
  const calls = await page.evaluate(() => window.videogenHost.log.viewToolCalls);
  check("the view followed the task with check_task only (nothing billed)", calls.length > 0 &&
    calls.every((c) => c.name === "check_task"), { calls: calls.length, names: [...new Set(calls.map((c) => c.name))] });

  const facts = await inner.evaluate(() => ({
    duration: document.querySelector("#f-duration").textContent,
    fps: document.querySelector("#f-fps").textContent,
    resolution: document.querySelector("#f-resolution").textContent,
    size: document.querySelector("#f-size").textContent,
    mode: document.querySelector("#f-mode").textContent,
    path: document.querySelector("#f-path").textContent,
    prompt: document.querySelector("#f-prompt").textContent,
    notice: document.querySelector("#notice").hidden ? null : document.querySelector("#notice").textContent,
  }));
  await inner.waitForFunction(() => document.querySelector("video").readyState >= 2, null, { timeout: 20000 });
  const media = await inner.evaluate(() => {
    const v = document.querySelector("video");
    return { duration: v.duration, width: v.videoWidth, height: v.videoHeight, src: v.src.slice(0, 5), poster: v.poster.slice(0, 23) };
  });
  const probed = parseFloat(facts.duration);
  check("the <video> loads from a Blob URL and reports the probed duration",
    media.src === "blob:" && Math.abs(media.duration - probed) < 0.15, { media, facts });
  check("the poster is shown first", media.poster === "data:image/jpeg;base64,", { poster: media.poster });
  check("the resolution shown is the video's", facts.resolution === `${media.width}×${media.height}`, {
    resolution: facts.resolution,
  });

  const played = await inner.evaluate(async () => {
    const v = document.querySelector("video");
    v.muted = true;
    await v.play();
    await new Promise((ok) => {
      const wait = () => (v.currentTime > 1 ? ok() : requestAnimationFrame(wait));
      wait();
    });
    v.pause();
    const canvas = document.createElement("canvas");
    canvas.width = 160;
    canvas.height = 90;
    const g = canvas.getContext("2d");
    g.drawImage(v, 0, 0, canvas.width, canvas.height);
    const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
    let sum = 0;
    let sq = 0;
    const n = px.length / 4;
    for (let i = 0; i < px.length; i += 4) {
      const y = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
      sum += y;
      sq += y * y;
    }
    const mean = sum / n;
    return { currentTime: v.currentTime, mean, stddev: Math.sqrt(Math.max(0, sq / n - mean * mean)) };
  });
  check("the video plays and a frame grabbed from it is not blank", played.currentTime > 1 &&
    played.mean > 10 && played.stddev > 5, played);
  check("the sandbox notice is visible", facts.notice?.startsWith("sandbox:"), { notice: facts.notice });

  await frame.locator("#download").click();
  await page.waitForFunction(() => window.videogenHost.log.downloads.length > 0, null, { timeout: 10000 });
  const downloads = await page.evaluate(() => window.videogenHost.log.downloads);
  check("Download reaches the host as ui/download-file with the MP4", downloads[0].type === "resource" &&
    downloads[0].mimeType === "video/mp4" && downloads[0].blobChars > 1000 &&
    downloads[0].uri.startsWith("file:///"), { download: downloads[0] });

  const heights = await page.evaluate(() => window.videogenHost.log.heights);
  check("inline, the view asks for at most 500 px", heights.length > 0 && Math.max(...heights) <= 500, {
    heights: [Math.min(...heights), Math.max(...heights)],
  });
  await page.locator("#view").screenshot({ path: join(artifacts, "player-finished.png") });

  await frame.locator("#fullscreen").click();
  await page.waitForFunction(() => window.videogenHost.log.displayModes.includes("fullscreen"));
  await frame.locator("#inline").waitFor({ state: "visible", timeout: 5000 });
  const wide = await inner.evaluate(() => document.body.classList.contains("wide"));
  await frame.locator("#inline").click();
  await page.waitForFunction(() => window.videogenHost.log.displayModes.includes("inline"));
  const modes = await page.evaluate(() => window.videogenHost.log.displayModes);
  check("fullscreen and back go through ui/request-display-mode",
    wide && modes.join() === "fullscreen,inline", { modes, wide });
  return facts;
}

async function specDefaultCsp(page, taskId) {
  // The specification's default CSP has no blob: for media: the view plays a data: URL instead.
  await runView(page, { tool: "check_task", arguments: { task_id: taskId, wait_seconds: 0 }, csp: "spec-default" });
  const frame = view(page);
  await frame.locator("#done").waitFor({ state: "visible", timeout: 20000 });
  const inner = await viewFrame(page);
  await inner.waitForFunction(() => document.querySelector("video").readyState >= 2, null, { timeout: 20000 });
  const media = await inner.evaluate(() => {
    const v = document.querySelector("video");
    return { src: v.src.slice(0, 15), duration: v.duration, note: document.querySelector("#video-note").textContent };
  });
  const probed = parseFloat(await frame.locator("#f-duration").textContent());
  check("under the specification's default CSP (no blob:) the video plays from a data: URL",
    media.src === "data:video/mp4;" && Math.abs(media.duration - probed) < 0.15 && !media.note, media);
}

async function refusedRead(page, taskId) {
  await runView(page, { tool: "check_task", arguments: { task_id: taskId, wait_seconds: 0 }, theme: "dark", denyRead: true });
  const frame = view(page);
  await frame.locator("#done").waitFor({ state: "visible", timeout: 20000 });
  await frame.locator("#video-note").filter({ hasText: "cannot play here" }).waitFor({ timeout: 10000 });
  const inner = await viewFrame(page);
  const state = await inner.evaluate(() => ({
    note: document.querySelector("#video-note").textContent,
    poster: document.querySelector("video").poster.slice(0, 23),
    theme: document.documentElement.dataset.theme,
    background: getComputedStyle(document.body).backgroundColor,
    download: !document.querySelector("#download").hidden,
  }));
  const path = await frame.locator("#f-path").textContent();
  check("a host that refuses the video read gets poster, download and the save path",
    state.poster === "data:image/jpeg;base64," && state.download && path.endsWith(".mp4") &&
      state.note.includes(path), { ...state, path });
  const dark = state.background.match(/\d+/g).slice(0, 3).map(Number);
  check("the view follows the host's dark theme", state.theme === "dark" && Math.max(...dark) < 80, {
    theme: state.theme, background: state.background,
  });
  await frame.locator("#download").click();
  await page.waitForFunction(() => window.videogenHost.log.downloads.length > 0, null, { timeout: 10000 });
  const download = (await page.evaluate(() => window.videogenHost.log.downloads))[0];
  check("without the bytes, Download sends a link to the saved file",
    download.type === "resource_link" && download.uri.startsWith("file:///"), { download });
  await page.locator("#view").screenshot({ path: join(artifacts, "player-fallback-dark.png") });
}

async function unknownTask(page) {
  await runView(page, { tool: "check_task", arguments: { task_id: "vg_000000000000", wait_seconds: 0 } });
  const frame = view(page);
  await frame.locator("#problem").waitFor({ state: "visible", timeout: 20000 });
  const message = await frame.locator("#problem-message").textContent();
  check("an unknown task shows the server's message in words", /vg_000000000000/.test(message) &&
    /list_tasks/.test(message), { message });
}

/**
 * Time resources/read of saved videos in the page (base64 over HTTP, decoded into a Blob), as
 * the player reads them. An entry may give `pad_to` (bytes): the saved file is then replaced by
 * that many random bytes before reading — a transport measurement of sizes the sandbox does not
 * render, and past the server's cap, the refusal.
 */
async function measure(page, entries) {
  for (const { pad_to: padTo, ...args } of entries) {
    const result = await page.evaluate((a) => window.videogenHost.callTool("generate_video", a), args);
    const r = result.structuredContent;
    if (r?.status !== "completed") {
      report.measurements.push({ args, error: r?.message ?? "not completed" });
      continue;
    }
    if (padTo) writeFileSync(r.local_path, randomBytes(padTo));
    const uri = `videogen://videos/${r.task_id}`;
    const runs = [];
    try {
      for (let i = 0; i < 3; i++) runs.push(await page.evaluate((u) => window.videogenHost.measureRead(u), uri));
    } catch (error) {
      report.measurements.push({ mode: r.mode, bytes: padTo ?? r.size_bytes, refused: String(error).split("\n")[0] });
      continue;
    }
    runs.sort((a, b) => a.ms - b.ms);
    report.measurements.push({
      mode: padTo ? `${r.mode}, padded` : r.mode,
      bytes: runs[1].bytes,
      base64Chars: runs[1].base64Chars,
      medianMs: Math.round(runs[1].ms),
    });
  }
}

async function main() {
  const html = await buildHost();
  const host = await serveHost(html);
  const base = `http://127.0.0.1:${host.address().port}/`;
  const profile = mkdtempSync(join(tmpdir(), "videogen-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: values.chromium,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 700, height: 620 },
  });
  report.browser = context.browser()?.version() ?? "chromium";
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("console", (m) => m.type() === "error" && console.error("[page]", m.text()));
    await page.goto(base);
    const facts = await happyPath(page);
    const taskId = (await page.evaluate(() => window.videogenHost.log.viewToolCalls[0].arguments.task_id));
    await page.goto(base);
    await specDefaultCsp(page, taskId);
    await page.goto(base);
    await refusedRead(page, taskId);
    await page.goto(base);
    await unknownTask(page);
    if (values.measure) {
      await page.goto(base);
      await measure(page, JSON.parse(values.measure));
    }
    report.facts = facts;
  } catch (error) {
    report.failures.push(`error: ${error?.stack ?? error}`);
  } finally {
    await context.close();
    host.close();
    rmSync(profile, { recursive: true, force: true });
  }
  report.artifacts = artifacts;
  writeFileSync(join(artifacts, "browser-report.json"), JSON.stringify(report, null, 2));
  console.log(JSON.stringify(report, null, 2));
  process.exit(report.failures.length ? 1 : 0);
}

await main();
