/** What the player reads from a tool result, and the small pure helpers it formats with. */

/** The structured result of generate_video / check_task (videogen.report.VideoResult). */
export interface VideoResult {
  task_id: string;
  status: string;
  done: boolean;
  provider: string;
  mode: string;
  prompt: string;
  video_url?: string | null;
  local_path?: string | null;
  poster_path?: string | null;
  duration?: number | null;
  fps?: number | null;
  width?: number | null;
  height?: number | null;
  size_bytes?: number | null;
  progress?: number | null;
  elapsed: number;
  message: string;
  next_step?: string | null;
  error?: string | null;
  sandbox: boolean;
  notice?: string | null;
}

export interface ContentBlock {
  type: string;
  text?: string;
  data?: string;
  mimeType?: string;
  [key: string]: unknown;
}

export interface ToolResult {
  content: ContentBlock[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

const WAITING = new Set(["submitting", "queued", "running", "ready"]);

/** True while the task is moving on by itself (a made video whose save failed waits for a fix). */
export function isWaiting(r: VideoResult): boolean {
  return !r.done && WAITING.has(r.status) && !(r.status === "ready" && r.error);
}

/** The task's state in words. */
export function describeStatus(r: VideoResult): string {
  const progress = r.progress != null ? ` (${Math.round(r.progress * 100)}%)` : "";
  switch (r.status) {
    case "submitting":
      return "Submitting to the provider";
    case "queued":
      return `Queued at the provider${progress}`;
    case "running":
      return `Rendering${progress}`;
    case "ready":
      return r.error ? "Made, but saving the video failed" : "Made; saving the video";
    case "completed":
      return "Saved";
    case "failed":
      return "The video failed";
    case "expired":
      return "The video's link expired before it was saved";
    case "unknown":
      return "Whether the provider took the request is unknown";
    default:
      return r.status;
  }
}

export function formatElapsed(seconds: number): string {
  const whole = Math.max(0, Math.floor(seconds));
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  return `${minutes} min ${String(whole % 60).padStart(2, "0")} s`;
}

export function describeSize(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** A file: URL for a local path (POSIX or Windows). */
export function fileUrl(path: string): string {
  const slashed = path.replace(/\\/g, "/");
  const absolute = slashed.startsWith("/") ? slashed : `/${slashed}`;
  return `file://${encodeURI(absolute).replace(/#/g, "%23").replace(/\?/g, "%3F")}`;
}

export function base64ToBytes(base64: string): Uint8Array<ArrayBuffer> {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
