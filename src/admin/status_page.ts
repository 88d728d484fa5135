/**
 * The status page served at `GET /` on the admin port: one self-contained HTML document (no CDN, no build
 * step, no dependency) that reads `status.json` (relative, so it works behind any host, port or path prefix)
 * about once a second and draws it: rates, collapse ratios, a five-minute chart, hot keys, flights, the cache
 * and the effective configuration.
 *
 * It fits the admin port's content security policy: inline `<style>` and `<script>` only, the chart is
 * inline SVG, and the only request it makes is the same-origin fetch. Every value from the snapshot reaches
 * the DOM through `textContent` or `setAttribute`, never as markup.
 *
 * For tests and scrapers, every value drawn sits in an element whose `data-field` names its JSON path in the
 * snapshot (`sinceStart.requests`, `hotKeys.keys.0.key`, `config.cacheTtl`) and whose `data-value` holds the
 * raw value (a string as it is, anything else as JSON). `document.body.dataset.generatedAt` is the
 * `generatedAt` of the snapshot on screen, and `document.body.dataset.ready` is `"1"` once one was drawn.
 *
 * The page is real files in `status_page/` — `index.html`, `style.css`, `format.js` and `app.js` — formatted and
 * linted with the rest of the code, and openable as they are from that folder. They are imported as text
 * (`with { type: "text" }`), so they are part of the module graph: `deno compile` embeds them and the
 * container image carries them like any other module, and no file is read at run time. The style sheet and
 * the scripts are put inline here, once, at start-up.
 *
 * @module
 */

import html from "./status_page/index.html" with { type: "text" };
import style from "./status_page/style.css" with { type: "text" };
import format from "./status_page/format.js" with { type: "text" };
import panels from "./status_page/panels.js" with { type: "text" };
import app from "./status_page/app.js" with { type: "text" };

/**
 * `html` with every `<link rel="stylesheet" href="F">` and `<script src="F"></script>` replaced by the text
 * of `files[F]`, inline.
 *
 * @throws {Error} if the page names a file that is not given, or a given file is not named: a page that
 *   would load nothing, or half of itself, fails at start-up rather than in a browser.
 */
export function inlinePage(html: string, files: Readonly<Record<string, string>>): string {
  const used = new Set<string>();
  const text = (name: string) => {
    const content = files[name];
    if (content === undefined) {
      throw new Error(`status page: index.html names ${name}, which is not embedded`);
    }
    used.add(name);
    return content;
  };
  // Replaced by functions: a string replacement would read `$&` and the like in the script as patterns.
  const page = html
    .replace(/<link rel="stylesheet" href="([\w.-]+)"\s*\/?>/g, (_, name) => `<style>\n${text(name)}</style>`)
    .replace(/<script src="([\w.-]+)"><\/script>/g, (_, name) => `<script>\n${text(name)}</script>`);
  for (const name of Object.keys(files)) {
    if (!used.has(name)) throw new Error(`status page: ${name} is embedded but index.html does not name it`);
  }
  return page;
}

/** The page's HTML: one document, its style and scripts inline. */
export const STATUS_PAGE_HTML: string = inlinePage(html, {
  "style.css": style,
  "format.js": format,
  "panels.js": panels,
  "app.js": app,
});
