/**
 * The videogen player: an MCP Apps view of generate_video and check_task.
 *
 * - While the task runs it shows prompt, mode, provider, status and elapsed time, and follows
 *   the task with check_task through the host (free; never generate_video, which is billed).
 * - Once saved it plays the MP4 inline (poster first), read through the server as
 *   videogen://videos/{task_id} and played from a Blob URL; the server caps that resource's size
 *   and the view falls back to poster + download + path when the read is refused or fails.
 * - A failed, expired or unknown task shows the message and the next step, in words.
 */
import {
  App,
  applyDocumentTheme,
  applyHostFonts,
  applyHostStyleVariables,
  type McpUiDisplayMode,
  type McpUiHostContext,
} from "@modelcontextprotocol/ext-apps";
import "./player.css";
import {
  base64ToBytes,
  describeSize,
  describeStatus,
  fileUrl,
  formatElapsed,
  isWaiting,
  type ToolResult,
  type VideoResult,
} from "./model";

/** check_task waits this long server-side before answering, so the view polls gently. */
const CHECK_WAIT_SECONDS = 4;
/** After a lost call to the host, try again after this long. */
const RETRY_MS = 5000;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`player.html lacks #${id}`);
  return found as T;
};
const text = (id: string, value: string) => {
  $(id).textContent = value;
};
const sections = ["waiting", "running", "done", "problem"] as const;
function show(section: (typeof sections)[number]): void {
  for (const name of sections) $(name).hidden = name !== section;
}

const app = new App(
  { name: "videogen player", version: "1.0.0" },
  { availableDisplayModes: ["inline", "fullscreen", "pip"] },
);

let current: VideoResult | undefined;
let receivedAt = 0;
let followGeneration = 0;
let ticker: ReturnType<typeof setInterval> | undefined;
let loadedTask: string | undefined;
let videoBase64: string | undefined;
let videoUrl: string | undefined;
let videoMime = "video/mp4";

function setNotice(notice: string | null | undefined): void {
  const el = $("notice");
  el.textContent = notice ?? "";
  el.hidden = !notice;
}

function showWaitingInput(args: Record<string, unknown> | undefined): void {
  if (current) return;
  const prompt = typeof args?.prompt === "string" ? args.prompt : "";
  text("status-text", prompt ? `Submitting: ${prompt}` : "Waiting for the tool's answer");
  show("waiting");
}

function showRunning(r: VideoResult): void {
  show("running");
  text("run-status", describeStatus(r));
  text("run-mode", r.mode);
  text("run-provider", r.provider);
  text("run-task", r.task_id);
  text("run-prompt", r.prompt);
  // next_step tells the model to call check_task; the view does that itself.
  text("run-message", `${r.message} This view checks again by itself.`);
  tick();
  if (!ticker) ticker = setInterval(tick, 1000);
}

function tick(): void {
  if (!current || !isWaiting(current)) return;
  const seconds = current.elapsed + (performance.now() - receivedAt) / 1000;
  text("run-elapsed", formatElapsed(seconds));
}

function showProblem(title: string, message: string, next: string | null | undefined): void {
  stopTicker();
  show("problem");
  $("retry").hidden = !current || current.done || current.status !== "ready";
  text("problem-title", title);
  text("problem-message", message);
  text("problem-next", next ?? "");
}

function stopTicker(): void {
  if (ticker) clearInterval(ticker);
  ticker = undefined;
}

function showDone(r: VideoResult, poster: string | undefined): void {
  stopTicker();
  show("done");
  const video = $<HTMLVideoElement>("video");
  if (poster && !video.poster) video.poster = poster;
  text("f-duration", r.duration != null ? `${r.duration.toFixed(1)} s` : "—");
  text("f-fps", r.fps != null ? String(Math.round(r.fps * 100) / 100) : "—");
  text("f-resolution", r.width && r.height ? `${r.width}×${r.height}` : "—");
  text("f-size", r.size_bytes != null ? describeSize(r.size_bytes) : "—");
  text("f-mode", r.mode);
  text("f-path", r.local_path ?? "");
  text("f-prompt", r.prompt);
  $("download").hidden = !app.getHostCapabilities()?.downloadFile;
  updateDisplayButtons(app.getHostContext());
  if (loadedTask !== r.task_id) void loadVideo(r);
}

function videoNote(message: string): void {
  const el = $("video-note");
  el.textContent = message;
  el.hidden = !message;
}

async function loadVideo(r: VideoResult): Promise<void> {
  loadedTask = r.task_id;
  videoNote("Loading the video…");
  try {
    const read = await app.readServerResource({ uri: `videogen://videos/${r.task_id}` });
    const content = read.contents[0];
    if (!content || !("blob" in content) || typeof content.blob !== "string") {
      throw new Error("the server sent no video data");
    }
    const bytes = base64ToBytes(content.blob);
    if (videoUrl) URL.revokeObjectURL(videoUrl);
    videoMime = content.mimeType || "video/mp4";
    videoUrl = URL.createObjectURL(new Blob([bytes], { type: videoMime }));
    videoBase64 = content.blob;
    const video = $<HTMLVideoElement>("video");
    video.controls = true;
    video.src = videoUrl;
    videoNote("");
  } catch (error) {
    cannotPlay(error instanceof Error ? error.message : String(error));
  }
}

function cannotPlay(reason: string): void {
  const path = current?.local_path ?? "its save path";
  videoNote(`The video cannot play here (${reason}). It is saved at ${path} — open that file, or use Download.`);
}

/**
 * A Blob URL is the light way to play the bytes, but the Apps specification's default CSP
 * (`media-src 'self' data:`) does not list blob:, so a host applying it blocks that URL: then
 * play the same bytes from a data: URL, which that CSP allows.
 */
function onVideoError(): void {
  const video = $<HTMLVideoElement>("video");
  if (video.src.startsWith("blob:") && videoBase64) {
    video.src = `data:${videoMime};base64,${videoBase64}`;
    return;
  }
  if (video.src) cannotPlay(video.error?.message || "the browser could not play it");
}

async function download(): Promise<void> {
  const r = current;
  if (!r?.local_path) return;
  const name = r.local_path.split(/[\\/]/).pop() || `${r.task_id}.mp4`;
  const uri = fileUrl(r.local_path);
  const result = await app.downloadFile({
    contents: videoBase64
      ? [{ type: "resource", resource: { uri, mimeType: "video/mp4", blob: videoBase64 } }]
      : [{ type: "resource_link", uri, name, mimeType: "video/mp4", size: r.size_bytes ?? undefined }],
  });
  if (result.isError) videoNote(`The download did not start; the video is saved at ${r.local_path}.`);
}

function updateDisplayButtons(ctx: McpUiHostContext | undefined): void {
  const available = ctx?.availableDisplayModes ?? [];
  const mode = ctx?.displayMode ?? "inline";
  $("fullscreen").hidden = !available.includes("fullscreen") || mode === "fullscreen";
  $("pip").hidden = !available.includes("pip") || mode === "pip";
  $("inline").hidden = mode === "inline" || !available.includes("inline");
  document.body.classList.toggle("wide", mode === "fullscreen");
}

async function requestMode(mode: McpUiDisplayMode): Promise<void> {
  const granted = await app.requestDisplayMode({ mode });
  updateDisplayButtons({ ...app.getHostContext(), displayMode: granted.mode });
}

function applyContext(ctx: McpUiHostContext | undefined): void {
  if (!ctx) return;
  if (ctx.theme) applyDocumentTheme(ctx.theme);
  if (ctx.styles?.variables) applyHostStyleVariables(ctx.styles.variables);
  if (ctx.styles?.css?.fonts) applyHostFonts(ctx.styles.css.fonts);
  updateDisplayButtons(ctx);
}

/** Show one result of generate_video or check_task; follow the task while it runs. */
function render(result: ToolResult): void {
  const r = result.structuredContent as VideoResult | undefined;
  if (result.isError || !r || typeof r.task_id !== "string") {
    const message = result.content
      .flatMap((c) => (c.type === "text" && typeof c.text === "string" ? [c.text] : []))
      .join("\n");
    showProblem("The request did not go through", message || "The tool gave no reason.", null);
    return;
  }
  current = r;
  receivedAt = performance.now();
  setNotice(r.notice);
  if (r.status === "completed" && r.local_path) {
    const image = result.content.find((c) => c.type === "image");
    const poster =
      image && typeof image.data === "string"
        ? `data:${image.mimeType ?? "image/jpeg"};base64,${image.data}`
        : undefined;
    showDone(r, poster);
  } else if (isWaiting(r)) {
    showRunning(r);
    void follow(r.task_id);
  } else {
    showProblem(describeStatus(r), r.error ? `${r.message} (${r.error})` : r.message, r.next_step);
  }
}

/** "Check again" on a made video whose save failed: one free check_task. */
async function checkAgain(): Promise<void> {
  if (!current) return;
  const result = await app.callServerTool({
    name: "check_task",
    arguments: { task_id: current.task_id, wait_seconds: CHECK_WAIT_SECONDS },
  });
  render(result as ToolResult);
}

/** Call check_task until the task is done; one follower at a time. */
async function follow(taskId: string): Promise<void> {
  const generation = ++followGeneration;
  while (generation === followGeneration && current && isWaiting(current)) {
    try {
      const result = (await app.callServerTool({
        name: "check_task",
        arguments: { task_id: taskId, wait_seconds: CHECK_WAIT_SECONDS },
      })) as ToolResult;
      if (generation !== followGeneration) return;
      render(result); // starts the next follower if the task still runs
      return;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      text("run-message", `Lost contact with the host (${reason}); trying again.`);
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }
}

$("download").addEventListener("click", () => void download());
$("video").addEventListener("error", onVideoError);
$("retry").addEventListener("click", () => void checkAgain());
$("fullscreen").addEventListener("click", () => void requestMode("fullscreen"));
$("pip").addEventListener("click", () => void requestMode("pip"));
$("inline").addEventListener("click", () => void requestMode("inline"));

app.ontoolinput = (params) => showWaitingInput(params.arguments);
app.ontoolresult = (result) => render(result as ToolResult);
app.ontoolcancelled = (params) =>
  showProblem(
    "The call was cancelled",
    params.reason ?? "The host cancelled the tool call.",
    "A submitted video keeps rendering and is saved anyway: ask for list_tasks to find it.",
  );
app.onhostcontextchanged = () => applyContext(app.getHostContext());

void app.connect().then(() => applyContext(app.getHostContext()));
