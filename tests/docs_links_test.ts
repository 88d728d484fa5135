/**
 * The README and docs/ link to each other by file and heading: every relative link must reach a file that
 * exists, and every `#anchor` a heading in it (GitHub's slugs). A merge once dropped two sections that
 * other pages still pointed to; this catches that.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\- _]/gu, "").replace(/ /g, "-");
}

/** The anchors of a Markdown file's headings (outside code fences). */
function anchors(text: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    const match = fenced ? null : /^#{1,6}\s+(.*)$/.exec(line);
    if (match) out.add(slug(match[1]));
  }
  return out;
}

Deno.test("README.md and docs/*.md: every relative link reaches a file, and every #anchor a heading in it", async () => {
  const pages = ["README.md"];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.name.endsWith(".md")) pages.push(`docs/${entry.name}`);
  }
  const broken: string[] = [];
  let checked = 0;
  for (const page of pages) {
    const url = new URL(page, ROOT);
    const text = await Deno.readTextFile(url);
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
      const [path, anchor] = target.split("#");
      const file = path === "" ? url : new URL(path, url);
      let body: string;
      try {
        body = path === "" ? text : await Deno.readTextFile(file);
      } catch {
        try {
          await Deno.stat(file); // a folder or a file that is not text
          continue;
        } catch {
          broken.push(`${page}: ${target} (no such file)`);
          continue;
        }
      }
      checked++;
      if (anchor !== undefined && file.pathname.endsWith(".md") && !anchors(body).has(anchor)) {
        broken.push(`${page}: ${target} (no such heading)`);
      }
    }
  }
  assert.ok(checked > 50, `only ${checked} links found: is the pattern still right?`);
  assert.deepEqual(broken, []);
});
