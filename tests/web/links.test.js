// web/links.js: share links keep the room and token in the fragment.
import assert from "node:assert/strict";
import { test } from "node:test";

import { readInvite, shareLink, withoutInvite } from "../../web/links.js";

test("a share link holds the room and token in its fragment only", () => {
  const link = shareLink("http://h:8/?test#old", "R 1", "t/k");
  const url = new URL(link);
  assert.equal(url.search, "?test");
  assert.deepEqual(readInvite(link), { invite: { room: "R 1", token: "t/k" }, rewritten: null });
});

test("the old query form is accepted once and rewritten to the fragment", () => {
  const { invite, rewritten } = readInvite("http://h:8/?test&room=R&token=T");
  assert.deepEqual(invite, { room: "R", token: "T" });
  const url = new URL(rewritten);
  assert.deepEqual([...url.searchParams.keys()], ["test"]);
  assert.equal(url.hash, "#room=R&token=T");
});

test("no invitation without both parts; leaving drops it", () => {
  assert.deepEqual(readInvite("http://h:8/#room=R"), { invite: null, rewritten: null });
  assert.deepEqual(readInvite("http://h:8/"), { invite: null, rewritten: null });
  assert.equal(withoutInvite("http://h:8/?test#room=R&token=T"), "http://h:8/?test");
});
