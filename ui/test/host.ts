/**
 * A minimal MCP Apps host for the browser test: an MCP client over streamable HTTP (same
 * origin, /mcp), an AppBridge per view and a sandboxed iframe, as the ext-apps basic-host does.
 * It records what the view asks of it in `window.videogenHost.log`.
 */
import {
  AppBridge,
  PostMessageTransport,
  RESOURCE_MIME_TYPE,
  getToolUiResourceUri,
  type McpUiDisplayMode,
  type McpUiHostContext,
} from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

interface RunOptions {
  tool: string;
  arguments: Record<string, unknown>;
  theme?: "light" | "dark";
  denyRead?: boolean;
  /** "spec-default": the CSP the Apps specification makes hosts apply when a resource declares
   * none (media from 'self' and data: only); "blob": the same plus blob: (as basic-host). */
  csp?: "spec-default" | "blob";
}

const SPEC_DEFAULT_CSP =
  "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
  "img-src 'self' data:; media-src 'self' data:; connect-src 'none'";
const BLOB_CSP = SPEC_DEFAULT_CSP.replace("media-src 'self' data:", "media-src 'self' data: blob:");

/** The view's HTML with the host's Content-Security-Policy in front of everything else. */
function withCsp(html: string, csp: string): string {
  const meta = `<meta http-equiv="Content-Security-Policy" content="${csp}">`;
  return html.replace(/<head([^>]*)>/i, (head) => `${head}${meta}`);
}

const log = {
  viewToolCalls: [] as { name: string; arguments: unknown }[],
  viewReads: [] as string[],
  downloads: [] as { type: string; mimeType?: string; uri?: string; blobChars?: number }[],
  displayModes: [] as McpUiDisplayMode[],
  heights: [] as number[],
  toolResult: undefined as unknown,
};

let client: Client | undefined;
let bridge: AppBridge | undefined;

async function connect(): Promise<Client> {
  if (client) return client;
  const connected = new Client(
    { name: "videogen-test-host", version: "1.0.0" },
    {
      capabilities: {
        extensions: { "io.modelcontextprotocol/ui": { mimeTypes: [RESOURCE_MIME_TYPE] } },
      },
    },
  );
  await connected.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.href)));
  client = connected;
  return connected;
}

async function run(options: RunOptions): Promise<void> {
  const mcp = await connect();
  const tools = (await mcp.listTools()).tools;
  const tool = tools.find((t) => t.name === options.tool);
  if (!tool) throw new Error(`the server has no tool ${options.tool}`);
  const uri = getToolUiResourceUri(tool);
  if (!uri) throw new Error(`${options.tool} has no _meta.ui.resourceUri`);
  const resource = (await mcp.readResource({ uri })).contents[0];
  if (!resource || resource.mimeType !== RESOURCE_MIME_TYPE || !("text" in resource)) {
    throw new Error(`${uri} is not served as ${RESOURCE_MIME_TYPE}`);
  }
  const resultPromise = mcp.callTool({ name: options.tool, arguments: options.arguments });

  const theme = options.theme ?? "light";
  document.body.classList.toggle("dark", theme === "dark");
  const slot = document.getElementById("slot")!;
  slot.replaceChildren();
  const iframe = document.createElement("iframe");
  iframe.id = "view";
  iframe.setAttribute("sandbox", "allow-scripts");
  slot.append(iframe);

  const context: McpUiHostContext = {
    theme,
    displayMode: "inline",
    availableDisplayModes: ["inline", "fullscreen", "pip"],
    containerDimensions: { width: 640, maxHeight: 500 },
    locale: "en-US",
  };
  bridge?.close();
  const view = new AppBridge(
    null,
    { name: "videogen-test-host", version: "1.0.0" },
    { openLinks: {}, downloadFile: {}, serverTools: {}, serverResources: {}, logging: {} },
    { hostContext: context },
  );
  bridge = view;
  view.oncalltool = async (params) => {
    log.viewToolCalls.push({ name: params.name, arguments: params.arguments });
    return (await mcp.callTool(params)) as never;
  };
  view.onreadresource = async (params) => {
    log.viewReads.push(params.uri);
    if (options.denyRead) throw new Error("this host does not pass videos to views");
    return await mcp.readResource(params);
  };
  view.ondownloadfile = async (params) => {
    for (const item of params.contents) {
      if (item.type === "resource") {
        const r = item.resource as { uri: string; mimeType?: string; blob?: string };
        log.downloads.push({ type: item.type, uri: r.uri, mimeType: r.mimeType, blobChars: r.blob?.length });
      } else {
        log.downloads.push({ type: item.type, uri: item.uri, mimeType: item.mimeType });
      }
    }
    return {};
  };
  view.onrequestdisplaymode = async ({ mode }) => {
    log.displayModes.push(mode);
    iframe.classList.toggle("fullscreen", mode !== "inline");
    view.setHostContext({ ...context, displayMode: mode });
    return { mode };
  };
  view.onsizechange = ({ height }) => {
    if (height === undefined) return;
    log.heights.push(height);
    if (!iframe.classList.contains("fullscreen")) iframe.style.height = `${height}px`;
  };
  const initialized = new Promise<void>((resolve) => {
    view.oninitialized = () => resolve();
  });
  await view.connect(new PostMessageTransport(iframe.contentWindow!, iframe.contentWindow!));
  iframe.srcdoc = withCsp(resource.text, options.csp === "blob" ? BLOB_CSP : SPEC_DEFAULT_CSP);
  await initialized;
  await view.sendToolInput({ arguments: options.arguments });
  const result = await resultPromise;
  log.toolResult = result;
  await view.sendToolResult(result as never);
}

/** Time a resources/read of a video as a view's read would go: base64 over HTTP, decoded. */
async function measureRead(uri: string): Promise<{ ms: number; base64Chars: number; bytes: number }> {
  const mcp = await connect();
  const started = performance.now();
  const content = (await mcp.readResource({ uri })).contents[0];
  if (!content || !("blob" in content)) throw new Error(`${uri} gave no blob`);
  const binary = atob(content.blob);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  const url = URL.createObjectURL(new Blob([bytes], { type: "video/mp4" }));
  URL.revokeObjectURL(url);
  return { ms: performance.now() - started, base64Chars: content.blob.length, bytes: bytes.length };
}

async function callTool(name: string, args: Record<string, unknown>): Promise<unknown> {
  return await (await connect()).callTool({ name, arguments: args });
}

Object.assign(window, { videogenHost: { run, measureRead, callTool, log } });
