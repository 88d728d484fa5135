import assert from "node:assert/strict";
import { inlinePage, STATUS_PAGE_HTML } from "../src/admin/status_page.ts";

const ASSETS = new URL("../src/admin/status_page/", import.meta.url);

Deno.test("STATUS_PAGE_HTML is index.html with style.css and its scripts inline, and loads nothing else", async () => {
  for (const name of ["style.css", "format.js", "panels.js", "app.js"]) {
    const text = await Deno.readTextFile(new URL(name, ASSETS));
    assert.ok(STATUS_PAGE_HTML.includes(text), `${name} is not inline in the page`);
  }
  assert.doesNotMatch(STATUS_PAGE_HTML, /<script src=|<link /);
  assert.match(STATUS_PAGE_HTML, /^<!DOCTYPE html>/i);
});

Deno.test("inlinePage() keeps $ patterns in a script as they are, and refuses a page that names a file it lacks", async (t) => {
  await t.step("a script's `$&` is text, not a replacement pattern", () => {
    const page = inlinePage('<script src="a.js"></script>', { "a.js": "x.replace(/a/, '$&$1')" });
    assert.equal(page, "<script>\nx.replace(/a/, '$&$1')</script>");
  });
  await t.step("a file the page names but is not given", () => {
    assert.throws(() => inlinePage('<link rel="stylesheet" href="b.css">', {}), /names b\.css/);
  });
  await t.step("a file given but not named", () => {
    assert.throws(() => inlinePage("<p></p>", { "c.js": "" }), /c\.js is embedded but index\.html/);
  });
});
