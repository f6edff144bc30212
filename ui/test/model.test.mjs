// Unit tests of the player's pure helpers (src/model.ts, compiled by `npm run test:unit`).
import assert from "node:assert/strict";
import { test } from "node:test";
import { describeStatus, fileUrl, formatElapsed, isWaiting } from "../dist-test/model/model.js";

const task = (fields) => ({
  task_id: "vg_1", status: "running", done: false, provider: "volcengine", mode: "t2v_720p",
  prompt: "p", elapsed: 3, message: "m", sandbox: true, ...fields,
});

test("a running or queued task is followed; a finished one is not", () => {
  assert.equal(isWaiting(task({ status: "queued" })), true);
  assert.equal(isWaiting(task({ status: "running" })), true);
  assert.equal(isWaiting(task({ status: "completed", done: true })), false);
  assert.equal(isWaiting(task({ status: "failed", done: true })), false);
});

test("a made video whose save failed waits for a fix instead of being polled forever", () => {
  assert.equal(isWaiting(task({ status: "ready" })), true);
  assert.equal(isWaiting(task({ status: "ready", error: "disk full" })), false);
  assert.match(describeStatus(task({ status: "ready", error: "disk full" })), /saving the video failed/);
});

test("elapsed time reads as seconds, then minutes", () => {
  assert.equal(formatElapsed(7.9), "7 s");
  assert.equal(formatElapsed(65), "1 min 05 s");
});

test("save paths become file URLs on POSIX and Windows, special characters escaped", () => {
  assert.equal(fileUrl("/home/a b/v#1.mp4"), "file:///home/a%20b/v%231.mp4");
  assert.equal(fileUrl("C:\\Users\\me\\v.mp4"), "file:///C:/Users/me/v.mp4");
});
